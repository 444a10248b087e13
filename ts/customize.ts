import { randomBytes } from 'node:crypto'
import native = require('./native')
import {
  checkOptions,
  checkPath,
  checkString,
  invalidArgType,
  invalidArgValue,
  PathLike,
} from './validate'
import { run } from './run'

/** File contents to write: text (written as UTF-8) or bytes; `null` deletes the file. */
export type CustomizeContent = string | Uint8Array | null

/** Options of {@link customize}. */
export interface CustomizeOptions {
  /** The FAT partition's number (as Linux numbers it); default: the first FAT partition. */
  partition?: number
  /**
   * Files by path inside the partition (`/`-separated; subdirectories are created), written
   * whole, replacing what is there; `null` deletes a file (nothing happens when it is missing).
   */
  files?: Record<string, CustomizeContent>
  /**
   * Text appended once to an existing one-line file such as `cmdline.txt`: before its final
   * newline, and not again when the file already holds it.
   */
  append?: Record<string, string>
  /** Cancels the job: rejects with `ERR_SPARSEKIT_ABORTED`. */
  signal?: AbortSignal
}

/** The result of {@link customize}. */
export interface CustomizeResult {
  /** Where the FAT partition is on the disk. */
  partition: { start: number; length: number }
  /** Files written. */
  written: string[]
  /** Files deleted (those that existed). */
  deleted: string[]
  /** Files appended to. */
  appended: string[]
  /** Files that already held their text (nothing appended). */
  already: string[]
}

/** What a customisation writes: `files` and `append` of {@link CustomizeOptions}. */
export interface Customization {
  /** Files by path inside the boot partition. */
  files: Record<string, CustomizeContent>
  /** Text appended once to files of the boot partition. */
  append?: Record<string, string>
}

export const CUSTOMIZE_KEYS = ['partition', 'files', 'append'] as const

/** The native form of `files` and `append`, checked. */
export function customizationArgs(name: string, files: unknown, append: unknown) {
  const nativeFiles: { path: string; data?: Buffer }[] = []
  if (files !== undefined) {
    if (files === null || typeof files !== 'object' || Array.isArray(files)) {
      throw invalidArgType(`${name}.files`, 'an object of path: contents', files)
    }
    for (const [path, data] of Object.entries(files)) {
      if (data === null) nativeFiles.push({ path })
      else if (typeof data === 'string') nativeFiles.push({ path, data: Buffer.from(data, 'utf8') })
      else if (data instanceof Uint8Array)
        nativeFiles.push({ path, data: Buffer.from(data.buffer, data.byteOffset, data.byteLength) })
      else
        throw invalidArgType(
          `${name}.files[${JSON.stringify(path)}]`,
          'a string, a Buffer or Uint8Array, or null',
          data,
        )
    }
  }
  const nativeAppend: { path: string; text: string }[] = []
  if (append !== undefined) {
    if (append === null || typeof append !== 'object' || Array.isArray(append)) {
      throw invalidArgType(`${name}.append`, 'an object of path: text', append)
    }
    for (const [path, text] of Object.entries(append)) {
      checkString(`${name}.append[${JSON.stringify(path)}]`, text)
      nativeAppend.push({ path, text })
    }
  }
  return { files: nativeFiles, append: nativeAppend }
}

/**
 * First-boot customisation of an image file or a drive: files written, replaced or deleted
 * in its FAT boot partition (MBR or GPT, found by the partition table and the file system
 * in each partition) and text appended once to files such as `cmdline.txt`, without
 * mounting anything. Paths, the volume's clean flag and free space are checked before the
 * first write (`ERR_INVALID_ARG_VALUE`, `ERR_SPARSEKIT_CUSTOMIZE_DIRTY`, `ENOSPC` naming the
 * file); afterwards every file is read back by content. No FAT partition:
 * `ERR_SPARSEKIT_CUSTOMIZE_NO_FAT`, nothing written. A drive must not be mounted.
 */
export async function customize(
  path: PathLike,
  options?: CustomizeOptions,
): Promise<CustomizeResult> {
  const file = checkPath('path', path)
  const o = checkOptions('options', options, [...CUSTOMIZE_KEYS, 'signal']) as CustomizeOptions
  if (
    o.partition !== undefined &&
    !(Number.isInteger(o.partition) && o.partition >= 0 && o.partition < 2 ** 32)
  ) {
    throw invalidArgValue(
      'options.partition',
      o.partition,
      'must be a partition number (an integer from 0)',
    )
  }
  const args = customizationArgs('options', o.files, o.append)
  const r = await run({ signal: o.signal }, (cancel) =>
    native.customize(
      file,
      { partition: o.partition, files: args.files, append: args.append },
      cancel,
    ),
  )
  return {
    partition: { start: r.partitionStart, length: r.partitionLength },
    written: r.written,
    deleted: r.deleted,
    appended: r.appended,
    already: r.already,
  }
}

/**
 * `password` hashed with SHA-512-crypt (`$6$rounds=5000$salt$...`, a random 12-byte salt),
 * what `openssl passwd -6` and glibc's `crypt(3)` compute: for `passwd:` in cloud-init and
 * Raspberry Pi OS's `userconf`.
 */
export function hashPassword(password: string): string {
  checkString('password', password)
  return native.hashPassword(password, randomBytes(12))
}

/** First-boot settings, for {@link cloudInit} and {@link firstRun}. */
export interface FirstBoot {
  /** The machine's host name. */
  hostname?: string
  /** A user to create (cloud-init) or to rename the first user to (Raspberry Pi OS). */
  user?: {
    name: string
    /** A password, hashed here with SHA-512-crypt (never written in clear). */
    password?: string
    /** An already hashed password (`$6$...`). */
    passwordHash?: string
  }
  /** SSH public keys for that user; SSH is enabled when there are any. */
  sshKeys?: string[]
  /** Enable SSH with password login (off when only keys are given). */
  sshPasswordAuth?: boolean
  /** Wi-Fi to join. */
  wifi?: { ssid: string; password?: string; country: string; hidden?: boolean }
  /** Time zone, e.g. `Europe/Berlin`. */
  timezone?: string
  /** Keyboard layout, e.g. `us`. */
  keyboard?: string
}

const FIRST_BOOT_KEYS = [
  'hostname',
  'user',
  'sshKeys',
  'sshPasswordAuth',
  'wifi',
  'timezone',
  'keyboard',
] as const

function checkFirstBoot(o: unknown): FirstBoot {
  const f = checkOptions('settings', o, FIRST_BOOT_KEYS) as FirstBoot
  const word = (name: string, v: unknown, re: RegExp, what: string) => {
    if (v === undefined) return
    checkString(name, v)
    if (!re.test(v)) throw invalidArgValue(name, v, what)
  }
  word(
    'settings.hostname',
    f.hostname,
    /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/,
    'must be a host name (letters, digits, inner hyphens)',
  )
  if (f.user !== undefined) {
    checkOptions('settings.user', f.user, ['name', 'password', 'passwordHash'])
    word('settings.user.name', f.user.name, /^[a-z_][a-z0-9_-]{0,31}$/, 'must be a Linux user name')
    if (f.user.password !== undefined) checkString('settings.user.password', f.user.password)
    word(
      'settings.user.passwordHash',
      f.user.passwordHash,
      /^\$[0-9a-z]+\$[^\s:']+$/,
      'must be a crypt(3) hash such as $6$...',
    )
  }
  if (f.sshKeys !== undefined) {
    if (!Array.isArray(f.sshKeys))
      throw invalidArgType('settings.sshKeys', 'an array of strings', f.sshKeys)
    f.sshKeys.forEach((k, i) =>
      word(
        `settings.sshKeys[${i}]`,
        k,
        /^(ssh|ecdsa|sk)-[^\n']+$/,
        'must be one OpenSSH public key line',
      ),
    )
  }
  if (f.wifi !== undefined) {
    checkOptions('settings.wifi', f.wifi, ['ssid', 'password', 'country', 'hidden'])
    checkString('settings.wifi.ssid', f.wifi.ssid)
    if (f.wifi.ssid.length === 0 || Buffer.byteLength(f.wifi.ssid) > 32) {
      throw invalidArgValue('settings.wifi.ssid', f.wifi.ssid, 'must be 1 to 32 bytes')
    }
    if (f.wifi.password !== undefined) {
      checkString('settings.wifi.password', f.wifi.password)
      if (f.wifi.password.length < 8 || f.wifi.password.length > 63) {
        throw invalidArgValue(
          'settings.wifi.password',
          '(hidden)',
          'a WPA passphrase is 8 to 63 characters',
        )
      }
    }
    word(
      'settings.wifi.country',
      f.wifi.country,
      /^[A-Z]{2}$/,
      'must be a two-letter country code such as GB',
    )
  }
  word(
    'settings.timezone',
    f.timezone,
    /^[A-Za-z0-9_+\-/]+$/,
    'must be a time zone name such as Europe/Berlin',
  )
  word('settings.keyboard', f.keyboard, /^[a-z]{2,8}$/, 'must be a keyboard layout such as us')
  return f
}

/** A YAML double-quoted string (JSON's escapes are YAML's). */
const q = (s: string) => JSON.stringify(s)
/** A shell single-quoted word. */
const sh = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`

function passwordHashOf(user: FirstBoot['user']): string | undefined {
  if (!user) return undefined
  return (
    user.passwordHash ?? (user.password !== undefined ? hashPassword(user.password) : undefined)
  )
}

/**
 * The cloud-init NoCloud files (`user-data`, `meta-data`, `network-config`) for the boot
 * partition: read at first boot by Ubuntu Server and by Raspberry Pi OS images from late
 * 2024 on (Trixie, and Bookworm images that ship cloud-init). Passwords are stored hashed.
 */
export function cloudInit(settings: FirstBoot): Customization {
  const f = checkFirstBoot(settings)
  const lines = ['#cloud-config']
  if (f.hostname) lines.push(`hostname: ${q(f.hostname)}`, 'manage_etc_hosts: true')
  if (f.timezone) lines.push(`timezone: ${q(f.timezone)}`)
  if (f.keyboard) lines.push('keyboard:', `  layout: ${q(f.keyboard)}`)
  const hash = passwordHashOf(f.user)
  if (f.user) {
    lines.push(
      'users:',
      `  - name: ${q(f.user.name)}`,
      '    groups: users,adm,dialout,audio,netdev,video,plugdev,cdrom,games,input,gpio,spi,i2c,render,sudo',
    )
    lines.push(
      '    shell: /bin/bash',
      '    lock_passwd: ' + (hash ? 'false' : 'true'),
      "    sudo: 'ALL=(ALL) NOPASSWD:ALL'",
    )
    if (hash) lines.push(`    passwd: ${q(hash)}`)
    if (f.sshKeys?.length)
      lines.push('    ssh_authorized_keys:', ...f.sshKeys.map((k) => `      - ${q(k)}`))
  }
  if (f.sshKeys?.length || f.sshPasswordAuth) {
    lines.push('enable_ssh: true', `ssh_pwauth: ${f.sshPasswordAuth ? 'true' : 'false'}`)
  }
  const files: Record<string, CustomizeContent> = {
    'user-data': lines.join('\n') + '\n',
    'meta-data': `instance-id: sparsekit-${randomBytes(6).toString('hex')}\n`,
  }
  if (f.wifi) {
    const net = [
      'network:',
      '  version: 2',
      '  wifis:',
      '    renderer: NetworkManager',
      '    wlan0:',
      '      dhcp4: true',
    ]
    net.push(
      `      regulatory-domain: ${q(f.wifi.country)}`,
      '      access-points:',
      `        ${q(f.wifi.ssid)}:`,
    )
    if (f.wifi.password !== undefined) net.push(`          password: ${q(f.wifi.password)}`)
    if (f.wifi.hidden) net.push('          hidden: true')
    net.push('      optional: true')
    files['network-config'] = net.join('\n') + '\n'
  }
  return { files }
}

/**
 * Raspberry Pi Imager's `firstrun.sh` route for Raspberry Pi OS Bullseye and Bookworm:
 * `firstrun.sh` in the boot partition, started once through `cmdline.txt`
 * (`systemd.run=`), which removes itself and its `cmdline.txt` entry after running.
 * It uses the image's own tools (`imager_custom`, `userconf`). The Wi-Fi passphrase is
 * stored in the script until first boot.
 */
export function firstRun(settings: FirstBoot): Customization {
  const f = checkFirstBoot(settings)
  const s = ['#!/bin/bash', '', 'set +e', '']
  if (f.hostname) {
    s.push('CURRENT_HOSTNAME=$(cat /etc/hostname | tr -d " \\t\\n\\r")')
    s.push('if [ -f /usr/lib/raspberrypi-sys-mods/imager_custom ]; then')
    s.push(`   /usr/lib/raspberrypi-sys-mods/imager_custom set_hostname ${sh(f.hostname)}`)
    s.push('else')
    s.push(`   echo ${sh(f.hostname)} >/etc/hostname`)
    s.push(
      `   sed -i "s/127.0.1.1.*$CURRENT_HOSTNAME/127.0.1.1\\t"${sh(f.hostname)}"/g" /etc/hosts`,
    )
    s.push('fi')
  }
  if (f.sshKeys?.length) {
    s.push(
      `/usr/lib/raspberrypi-sys-mods/imager_custom enable_ssh -k ${f.sshKeys.map(sh).join(' ')}`,
    )
  } else if (f.sshPasswordAuth) {
    s.push('/usr/lib/raspberrypi-sys-mods/imager_custom enable_ssh')
  }
  const hash = passwordHashOf(f.user)
  if (f.user && hash) s.push(`/usr/lib/userconf-pi/userconf ${sh(f.user.name)} ${sh(hash)}`)
  if (f.wifi) {
    const args = [
      sh(f.wifi.ssid),
      f.wifi.password !== undefined ? sh(f.wifi.password) : "''",
      sh(f.wifi.country),
    ]
    s.push(
      `/usr/lib/raspberrypi-sys-mods/imager_custom set_wlan ${f.wifi.hidden ? '-h ' : ''}${args.join(' ')}`,
    )
  }
  if (f.keyboard) s.push(`/usr/lib/raspberrypi-sys-mods/imager_custom set_keymap ${sh(f.keyboard)}`)
  if (f.timezone)
    s.push(`/usr/lib/raspberrypi-sys-mods/imager_custom set_timezone ${sh(f.timezone)}`)
  s.push('rm -f /boot/firstrun.sh /boot/firmware/firstrun.sh')
  s.push("sed -i 's| systemd.run.*||g' /boot/cmdline.txt /boot/firmware/cmdline.txt 2>/dev/null")
  s.push('exit 0')
  return {
    files: { 'firstrun.sh': s.join('\n') + '\n' },
    append: {
      'cmdline.txt':
        ' systemd.run=/boot/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target',
    },
  }
}
