"""report/plots"""
