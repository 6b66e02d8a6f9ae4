// Antri gate service worker: the gate page and its scripts load without a network
// (page: network first, the saved copy offline; scripts: saved copy first). Scans and
// syncs are never cached: the page queues them itself while offline.
const CACHE = {{ cache|tojson }};
const ASSETS = {{ assets|tojson }};
self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(ASSETS)).then(() => self.skipWaiting()));
});
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));
self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== location.origin) return;
  if (url.pathname.startsWith("/static/")) {
    event.respondWith(
      caches.match(request).then((hit) => hit || fetch(request).then((response) => {
        if (response.ok) { const copy = response.clone(); caches.open(CACHE).then((c) => c.put(request, copy)); }
        return response;
      }))
    );
  } else if (url.pathname === "/gate") {
    event.respondWith(
      fetch(request).then((response) => {
        if (response.ok) { const copy = response.clone(); caches.open(CACHE).then((c) => c.put(request, copy)); }
        return response;
      }).catch(() => caches.match(request))
    );
  }
});
