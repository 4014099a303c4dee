// Sorts a table by the clicked column: numbers by value (data-sort holds the raw number), text otherwise.
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var asc = th.dataset.order !== "asc";
      table.querySelectorAll("thead th").forEach(function (h) { delete h.dataset.order; });
      th.dataset.order = asc ? "asc" : "desc";
      var key = function (tr) {
        var c = tr.cells[col], v = c.dataset.sort !== undefined ? c.dataset.sort : c.textContent;
        var n = parseFloat(v);
        return v === "" ? null : (isNaN(n) ? v.toLowerCase() : n);
      };
      var body = table.tBodies[0];
      Array.from(body.rows).sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null || y === null) { return (x === null) - (y === null); }  // empty cells last
        var r = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
        return asc ? r : -r;
      }).forEach(function (tr) { body.appendChild(tr); });
    });
  });
});
