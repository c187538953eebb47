// Progressive enhancement of the share link pages: copy buttons, a Reveal
// button that cannot be pressed twice, and expiry times in local time. The
// pages work without it, except for copying.
(function () {
  "use strict";

  var status = document.getElementById("copy-status");

  function say(text) {
    if (status) {
      status.textContent = text;
    }
  }

  // copyWithSelection copies through a selected off-screen textarea, for
  // pages that are not a secure context or lack the Clipboard API.
  function copyWithSelection(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try {
      ok = document.execCommand("copy");
    } catch (e) {
      ok = false;
    }
    document.body.removeChild(area);
    return ok ? Promise.resolve() : Promise.reject(new Error("copy failed"));
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () {
        return copyWithSelection(text);
      });
    }
    return copyWithSelection(text);
  }

  document.querySelectorAll("button.copy").forEach(function (button) {
    var source = document.getElementById(button.dataset.copy);
    if (!source) {
      return;
    }
    var label = button.textContent;
    button.addEventListener("click", function () {
      copyText(source.textContent).then(function () {
        button.textContent = "Copied";
        button.classList.add("copied");
        say(button.getAttribute("aria-label").replace(/^Copy/, "Copied") + ".");
        window.setTimeout(function () {
          button.textContent = label;
          button.classList.remove("copied");
        }, 2000);
      }, function () {
        window.getSelection().selectAllChildren(source);
        say("Copying failed: the text is selected, press Ctrl+C or \u2318C to copy it.");
      });
    });
  });

  var form = document.getElementById("reveal-form");
  if (form) {
    // A second POST would replace the revealed token with the "already
    // used" page.
    form.addEventListener("submit", function (event) {
      if (form.dataset.sent) {
        event.preventDefault();
        return;
      }
      form.dataset.sent = "1";
      var reveal = document.getElementById("reveal");
      reveal.disabled = true;
      reveal.textContent = "Revealing\u2026";
    });
  }

  document.querySelectorAll("time[datetime]").forEach(function (el) {
    var when = new Date(el.getAttribute("datetime"));
    if (!isNaN(when.getTime())) {
      el.title = el.textContent;
      el.textContent = when.toLocaleString(undefined, {
        weekday: "short", year: "numeric", month: "short", day: "numeric",
        hour: "2-digit", minute: "2-digit", timeZoneName: "short"
      });
    }
  });
})();
