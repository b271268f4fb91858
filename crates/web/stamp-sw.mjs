// Stamps a built site's service worker: its build id (a hash of every other file) and the list
// of files it precaches. build.sh runs it on dist/; the e2e tests run it on a changed copy to
// stand in for a new deployment.
//   node crates/web/stamp-sw.mjs DIR      (DIR/sw.js must still hold the placeholders of www/sw.js)
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = process.argv[2];
if (!root) throw new Error('usage: node crates/web/stamp-sw.mjs DIR');
const files = [];
const walk = (dir) => readdirSync(dir, { withFileTypes: true }).forEach((entry) => {
  const path = join(dir, entry.name);
  if (entry.isDirectory()) walk(path);
  else if (relative(root, path) !== 'sw.js') files.push(relative(root, path).split('\\').join('/'));
});
walk(root);
files.sort();
const hash = createHash('sha256');
for (const file of files) hash.update(file).update('\0').update(readFileSync(join(root, file)));
const build = hash.digest('hex').slice(0, 16);
const swPath = join(root, 'sw.js');
const sw = readFileSync(swPath, 'utf8')
  .replace('__SKINLENS_BUILD__', build)
  .replace("'./' /* __SKINLENS_ASSETS__ */", ["'./'", ...files.map((f) => `'./${f}'`)].join(',\n  '));
if (!sw.includes(build) || sw.includes('__SKINLENS_ASSETS__')) throw new Error(`${swPath}: placeholders not found`);
writeFileSync(swPath, sw);
console.log(`build ${build}: ${files.length} files`);
