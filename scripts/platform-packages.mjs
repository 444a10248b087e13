#!/usr/bin/env node
// Keeps the npm platform packages (npm/<platform>/) in step with the root package:
//   - each npm/*/package.json has the root's version;
//   - the root's optionalDependencies pin each of them to exactly that version (the napi-rs
//     convention: a user's npm installs only the one whose os/cpu/libc match);
//   - package-lock.json links each of them to its npm/ folder.
//
// Why the lock links: the platform packages are published only at release time, so during
// development the registry answers 404 for them. `npm install` then silently drops them
// from the lock, and `npm ci` rejects that lock as out of sync with package.json. A lock
// entry `node_modules/<name>` -> `{ link: true, resolved: "npm/<platform>" }` satisfies the
// exact-version spec from the local folder: `npm ci` and `npm install` never ask the
// registry for them, link the one matching this machine (the others are optional and
// skipped by os/cpu/libc), and keep the entries on later installs. Published tarballs are
// unaffected: the lock is not packed, and users resolve the same specs from the registry.
//
// Usage: node scripts/platform-packages.mjs           fix what differs (run by `npm version`)
//        node scripts/platform-packages.mjs --check   report differences, exit 1 if any
import { readFileSync, writeFileSync, readdirSync, existsSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const check = process.argv.includes('--check')
const problems = []
const read = (p) => JSON.parse(readFileSync(join(root, p), 'utf8'))
const write = (p, v) => writeFileSync(join(root, p), JSON.stringify(v, null, 2) + '\n')

const pkg = read('package.json')
const version = pkg.version
const platforms = readdirSync(join(root, 'npm'), { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(join(root, 'npm', d.name, 'package.json')))
  .map((d) => d.name)
  .sort()

const manifests = {}
for (const dir of platforms) {
  const file = `npm/${dir}/package.json`
  const m = read(file)
  manifests[dir] = m
  if (m.name !== `${pkg.name}-${dir}`) problems.push(`${file}: name ${m.name}, expected ${pkg.name}-${dir}`)
  if (m.version !== version) {
    problems.push(`${file}: version ${m.version}, root has ${version}`)
    m.version = version
    if (!check) write(file, m)
  }
}

const wanted = Object.fromEntries(platforms.map((d) => [manifests[d].name, version]))
const optional = pkg.optionalDependencies || {}
let pkgChanged = false
for (const [name, v] of Object.entries(wanted)) {
  if (optional[name] !== v) {
    problems.push(`package.json: optionalDependencies.${name} is ${optional[name]}, expected ${v}`)
    optional[name] = v
    pkgChanged = true
  }
}
if (pkgChanged && !check) {
  pkg.optionalDependencies = Object.fromEntries(Object.entries(optional).sort(([a], [b]) => a.localeCompare(b)))
  write('package.json', pkg)
}

const lock = read('package-lock.json')
let lockChanged = false
const rootEntry = lock.packages[''] || (lock.packages[''] = {})
rootEntry.optionalDependencies = rootEntry.optionalDependencies || {}
for (const dir of platforms) {
  const m = manifests[dir]
  // The entries as `npm install` itself writes them, so a later install leaves no diff.
  const link = { resolved: `npm/${dir}`, link: true }
  const target = { name: m.name, version }
  for (const k of ['cpu', 'libc', 'license']) if (m[k]) target[k] = m[k]
  target.optional = true
  for (const k of ['os', 'engines']) if (m[k]) target[k] = m[k]
  if (rootEntry.optionalDependencies[m.name] !== version) {
    problems.push(`package-lock.json: root optionalDependencies.${m.name} is not ${version}`)
    rootEntry.optionalDependencies[m.name] = version
    lockChanged = true
  }
  const linked = lock.packages[`node_modules/${m.name}`]
  if (!linked || linked.link !== true || linked.resolved !== `npm/${dir}`) {
    problems.push(`package-lock.json: node_modules/${m.name} is not a link to npm/${dir}`)
    lock.packages[`node_modules/${m.name}`] = link
    lockChanged = true
  }
  const folder = lock.packages[`npm/${dir}`]
  if (!folder || folder.name !== m.name || folder.version !== version || folder.optional !== true ||
      JSON.stringify([folder.os, folder.cpu, folder.libc]) !== JSON.stringify([m.os, m.cpu, m.libc])) {
    problems.push(`package-lock.json: npm/${dir} does not describe ${m.name}@${version} (optional, ${m.os}/${m.cpu}/${m.libc})`)
    lock.packages[`npm/${dir}`] = target
    lockChanged = true
  }
}
if (lockChanged && !check) {
  // npm keeps `packages` sorted by path; sort so the next `npm install` writes no diff.
  const [first, ...rest] = Object.keys(lock.packages)
  lock.packages = Object.fromEntries([first, ...rest.sort((a, b) => a.localeCompare(b, 'en'))].map((k) => [k, lock.packages[k]]))
  write('package-lock.json', lock)
}

if (problems.length === 0) {
  console.log(`platform packages: ${platforms.map((d) => manifests[d].name).join(', ')} at ${version}, linked in package-lock.json`)
} else if (check) {
  console.error(`platform packages out of step (fix: node scripts/platform-packages.mjs):\n  ${problems.join('\n  ')}`)
  process.exit(1)
} else {
  console.log(`platform packages: fixed\n  ${problems.join('\n  ')}`)
}
