"""Figures of a saved report: the accuracy-cost trade-off per task with its Pareto front, the length curves, and the
helper processes that draw part of them.

Modules: ``draw`` (the figures), ``quantities`` (what is plotted, from the table of figures), ``pool`` (helper
processes), ``__main__`` (a helper's entry point: ``python -m pytest_longeff.report.plots``).
"""
