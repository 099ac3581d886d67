// Copy buttons on code snippets; everything else works without JavaScript.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button.copy");
  if (!button) return;
  const code = button.closest("figure").querySelector("code").innerText;
  navigator.clipboard.writeText(code).then(() => { button.textContent = "copied"; });
});

// Live job pages are re-rendered every few seconds: keep the logs a reader opened open.
let openLogs = [];
document.addEventListener("htmx:beforeSwap", () => {
  openLogs = [...document.querySelectorAll("details[id][open]")].map((d) => d.id);
});
document.addEventListener("htmx:afterSwap", () => {
  openLogs.forEach((id) => document.getElementById(id)?.setAttribute("open", ""));
});
