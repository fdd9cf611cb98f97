// Optional conveniences; every feature works without this file.
(function () {
  "use strict";
  var form = document.getElementById("search-form");
  if (!form) { return; }
  // A new mode, collection or negation choice re-runs the current search at once (the submit button does the same without JS).
  form.addEventListener("change", function (event) {
    var name = event.target && event.target.name;
    if ((name === "mode" || name === "collection" || name === "negated") && !document.body.classList.contains("landing")) {
      form.submit();
    }
  });
  // "/" jumps to the query box, as on most search sites.
  document.addEventListener("keydown", function (event) {
    var tag = (document.activeElement && document.activeElement.tagName) || "";
    if (event.key === "/" && !/^(INPUT|TEXTAREA|SELECT)$/.test(tag)) {
      event.preventDefault();
      form.q.focus();
      form.q.select();
    }
  });
})();
