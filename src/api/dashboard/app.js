// Convoy dashboard: replaces the live part of the page with what the daemon sends over
// Server-Sent Events (HTML rendered and escaped by the server), keeping keyboard focus.
// No other script runs on the page; it loads nothing from any other origin.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var conn = document.getElementById("conn");
  if (!live || !window.EventSource) {
    return;
  }
  function say(text) {
    if (conn) {
      conn.textContent = text;
    }
  }
  var es = new EventSource("/events");
  es.addEventListener("live", function (e) {
    var active = document.activeElement;
    var activeId = active && active.id ? active.id : null;
    live.innerHTML = e.data;
    if (activeId) {
      var again = document.getElementById(activeId);
      if (again) {
        again.focus();
      }
    }
    say("live");
  });
  es.addEventListener("login", function () {
    es.close();
    window.location.assign("/login");
  });
  es.onopen = function () {
    say("live");
  };
  es.onerror = function () {
    say(es.readyState === EventSource.CLOSED ? "disconnected: reload" : "reconnecting");
  };
})();
