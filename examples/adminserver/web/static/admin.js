// Copy buttons: copy the value of the field named by data-copy. The
// button says "Copied" for two seconds, and carries the class "copied"
// meanwhile, so that the operator sees that the copy worked.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button.copy");
  if (!button) return;
  const field = document.getElementById(button.dataset.copy);
  try {
    await navigator.clipboard.writeText(field.value);
  } catch {
    field.select();
    if (!document.execCommand("copy")) {
      button.textContent = "Press Ctrl+C";
      return;
    }
  }
  button.textContent = "Copied";
  button.classList.add("copied");
  clearTimeout(button.resetTimer);
  button.resetTimer = setTimeout(() => {
    button.textContent = "Copy";
    button.classList.remove("copied");
  }, 2000);
});

// A choice with a select of its own (Later, with an expiry): picking a
// value in the select picks the choice too.
document.addEventListener("change", (event) => {
  const select = event.target.closest("select[data-checks]");
  if (select) document.getElementById(select.dataset.checks).checked = true;
});
