/* Sort the matrix by a clicked header (again: reverse; "n/a" always last) and filter it by the select boxes. */
(function () {
  "use strict";
  var table = document.getElementById("matrix");
  if (!table) { return; }
  var body = table.tBodies[0];
  var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var selects = Array.prototype.slice.call(document.querySelectorAll("select[data-filter]"));
  var count = document.getElementById("shown-count");

  function text(row, i) { return row.cells[i].textContent.trim(); }

  function compare(a, b) {
    var x = parseFloat(a), y = parseFloat(b);
    if (!isNaN(x) && !isNaN(y) && x !== y) { return x - y; }
    return a.localeCompare(b, undefined, {numeric: true});
  }

  function sortBy(th) {
    var i = th.cellIndex, ascending = th.getAttribute("aria-sort") !== "ascending";
    headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) {
      var a = text(r1, i), b = text(r2, i), na = a === "n/a", nb = b === "n/a";
      if (na || nb) { return na === nb ? 0 : (na ? 1 : -1); }
      return ascending ? compare(a, b) : compare(b, a);
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  function filter() {
    var shown = 0;
    Array.prototype.forEach.call(body.rows, function (row) {
      var keep = selects.every(function (s) { return !s.value || row.getAttribute("data-" + s.dataset.filter) === s.value; });
      row.hidden = !keep;
      shown += keep ? 1 : 0;
    });
    if (count) { count.textContent = shown + " of " + body.rows.length + " cells shown"; }
  }

  headers.forEach(function (th) {
    th.tabIndex = 0;
    th.addEventListener("click", function () { sortBy(th); });
    th.addEventListener("keydown", function (e) { if (e.key === "Enter") { sortBy(th); } });
  });
  selects.forEach(function (s) { s.addEventListener("change", filter); });
  filter();
}());
