// Offline support: the page, its engine and the model are cached at install, then served from
// the cache first, so a kiosk keeps working with the network gone. build.sh writes the build
// id and the asset list below; a new build changes this file, which makes browsers update it.
// A new build installs beside the old one and waits: the page announces it, and takes it when
// the person chooses to reload (or a kiosk resets), so one page never mixes two builds.

const BUILD = '__SKINLENS_BUILD__';
const ASSETS = ['./' /* __SKINLENS_ASSETS__ */];
const CACHE = `skinlens-${BUILD}`;

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      // `reload` bypasses the HTTP cache, so one build's cache never mixes in another's files.
      .then((cache) => cache.addAll(ASSETS.map((url) => new Request(url, { cache: 'reload' })))),
  );
});

self.addEventListener('message', (event) => {
  if (event.data?.type === 'skip-waiting') self.skipWaiting();
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) => Promise.all(names.filter((n) => n.startsWith('skinlens-') && n !== CACHE).map((n) => caches.delete(n))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET' || new URL(request.url).origin !== self.location.origin) return;
  // The query string only selects options (`?backend=`); the file is the same.
  event.respondWith(caches.match(request, { ignoreSearch: true, cacheName: CACHE }).then((hit) => hit ?? fetch(request)));
});
