// The console's own script (no inline script anywhere: the CSP forbids it).
// Moves focus to the main heading after a whole-page htmx swap, so keyboard and screen
// reader users start at the new content.
document.addEventListener("htmx:afterSettle", function (e) {
  if (e.detail && e.detail.target === document.body) {
    var main = document.getElementById("main");
    if (main) { main.focus(); }
  }
});
