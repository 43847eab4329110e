#!/usr/bin/env bash
# Fetches Debian's current cloud kernel for lendvm's Linux boot tests without
# installing it: `apt-get download` of the versioned package that
# linux-image-cloud-amd64 depends on, unpacked with `dpkg -x` into a cache
# directory. Prints the path of the kernel (vmlinuz-*, a bzImage) as its last
# line. Run it again and it reuses the extraction.
#
# Usage: scripts/fetch-debian-kernel.sh [--vmlinux] [CACHE_DIR]
#
#   CACHE_DIR   where to unpack (default: $LENDVM_DEBIAN_KERNEL_DIR, else
#               target/debian-kernel/ under the repository root). The kernel
#               ends up in CACHE_DIR/<package>/boot/vmlinuz-<version>.
#   --vmlinux   also decompress the bzImage's payload into the uncompressed
#               ELF vmlinux-<version> next to it (like the kernel's
#               scripts/extract-vmlinux), print what the two images carry
#               (boot protocol, compression, PVH entry note) on stderr, and
#               print the vmlinux path as a last line after the vmlinuz path.
#               Needs the decompressor for the kernel's compression (Debian's
#               cloud kernel uses LZ4: package lz4) and readelf (binutils)
#               for the note.
#
# Environment: LENDVM_DEBIAN_KERNEL_PACKAGE names the metapackage to follow
# (default linux-image-cloud-amd64).
#
# Only `apt-get update` needs root: it runs (through sudo when not root) only
# when apt has no usable package list for the kernel.
set -euo pipefail

meta=${LENDVM_DEBIAN_KERNEL_PACKAGE:-linux-image-cloud-amd64}
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() {
    echo "fetch-debian-kernel: error: $*" >&2
    exit 1
}
note() {
    echo "fetch-debian-kernel: $*" >&2
}
usage() {
    sed -n '/^# Usage:/,/^# when apt/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

want_vmlinux=0
cache=""
while (($#)); do
    case $1 in
    --vmlinux) want_vmlinux=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *)
        [[ -z $cache ]] || die "more than one cache directory given: '$cache' and '$1'"
        cache=$1
        ;;
    esac
    shift
done
cache=${cache:-${LENDVM_DEBIAN_KERNEL_DIR:-$repo_root/target/debian-kernel}}

for tool in apt-cache apt-get dpkg; do
    command -v "$tool" >/dev/null || die "'$tool' not found: this script needs a Debian-based system"
done

# Refreshes apt's package lists, as root (directly, or through sudo).
apt_update() {
    note "apt has no usable package list for $meta: running apt-get update"
    if ((EUID == 0)); then
        apt-get update -qq >&2 || die "apt-get update failed"
    elif command -v sudo >/dev/null; then
        sudo apt-get update -qq >&2 || die "sudo apt-get update failed"
    else
        die "apt-get update needs root and sudo is not installed: run 'apt-get update' as root, then retry"
    fi
}

# Prints the versioned kernel package the metapackage depends on, e.g.
# linux-image-6.1.0-56-cloud-amd64; fails if apt does not know the metapackage.
resolve() {
    local deps
    deps=$(apt-cache depends "$meta" 2>/dev/null) || return 1
    sed -n 's/^ *|\{0,1\}Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' <<<"$deps" | head -n 1 | grep .
}

# Downloads and unpacks package $1 into $cache/$1, atomically: a failed or
# interrupted run leaves no partial extraction behind to be reused.
fetch() {
    local pkg=$1 tmp
    mkdir -p "$cache" || die "cannot create the cache directory $cache"
    tmp=$(mktemp -d "$cache/.fetch.XXXXXX") || die "cannot create a temporary directory in $cache"
    # shellcheck disable=SC2064 # expand $tmp now
    trap "rm -rf '$tmp'" EXIT
    # As root apt downloads as the unprivileged _apt user, which cannot write
    # into the private temporary directory: let it download as root.
    local sandbox=()
    ((EUID != 0)) || sandbox=(-o APT::Sandbox::User=root)
    if ! (cd "$tmp" && apt-get download -q "${sandbox[@]}" "$pkg" >&2); then
        rm -rf "$tmp"
        trap - EXIT
        return 1
    fi
    local debs=("$tmp"/*.deb)
    [[ -f ${debs[0]} ]] || die "apt-get download $pkg produced no .deb in $tmp"
    dpkg -x "${debs[0]}" "$tmp/root" || die "dpkg -x ${debs[0]} failed"
    compgen -G "$tmp/root/boot/vmlinuz-*" >/dev/null ||
        die "package $pkg has no /boot/vmlinuz-* (is it a kernel image package?)"
    rm -rf "${cache:?}/$pkg"
    mv "$tmp/root" "$cache/$pkg"
    rm -rf "$tmp"
    trap - EXIT
}

pkg=$(resolve) || {
    apt_update
    pkg=$(resolve) || die "apt does not know $meta, or it depends on no linux-image-<version> package (apt-cache depends $meta)"
}
dir=$cache/$pkg
if compgen -G "$dir/boot/vmlinuz-*" >/dev/null; then
    note "reusing $dir"
else
    note "fetching $pkg into $dir"
    # A download fails for lack of package lists when they are stale (the
    # mirror no longer has the listed version): refresh them once.
    fetch "$pkg" || {
        apt_update
        pkg=$(resolve) || die "apt no longer knows $meta after apt-get update"
        dir=$cache/$pkg
        fetch "$pkg" || die "apt-get download $pkg failed (network? mirror?)"
    }
fi
vmlinuz=$(compgen -G "$dir/boot/vmlinuz-*" | head -n 1)

# ---- --vmlinux: decompress the bzImage's payload -------------------------

# Prints $3 bytes of file $1 at offset $2 as one little-endian unsigned number.
le() {
    od -An -tu"$3" -j "$2" -N "$3" "$1" | tr -d ' \n'
}
# Prints $3 bytes of file $1 at offset $2 as hex.
hex() {
    od -An -tx1 -j "$2" -N "$3" "$1" | tr -d ' \n'
}

# Reads the setup header of bzImage $1: reports its boot protocol version and
# payload, and sets payload_start, payload_stream (the compressed bytes),
# payload_size (uncompressed), payload_method and decompress (the command).
inspect_bzimage() {
    local img=$1 name=${1##*/}
    [[ $(hex "$img" 0x202 4) == 48647253 ]] || die "$img has no Linux setup header (no 'HdrS' at 0x202)"
    local version setup_sects payload_offset payload_length magic package
    version=$(le "$img" 0x206 2)
    note "$name: boot protocol $((version >> 8)).$((version & 0xff))"
    ((version >= 0x208)) || die "$img: boot protocol before 2.08 has no payload_offset/payload_length"
    setup_sects=$(le "$img" 0x1f1 1)
    ((setup_sects)) || setup_sects=4
    payload_offset=$(le "$img" 0x248 4)
    payload_length=$(le "$img" 0x24c 4)
    # The payload starts after the real-mode setup; the kernel's build
    # appends the uncompressed size (4 bytes) to the compressed stream.
    payload_start=$(((setup_sects + 1) * 512 + payload_offset))
    payload_stream=$((payload_length - 4))
    payload_size=$(le "$img" $((payload_start + payload_stream)) 4)
    magic=$(hex "$img" "$payload_start" 6)
    case $magic in
    1f8b08*) payload_method=gzip decompress=(gzip -dc) package=gzip ;;
    fd377a585a00) payload_method=xz decompress=(xz -dc) package=xz-utils ;;
    5d000000*) payload_method=lzma decompress=(xz -dc --format=lzma) package=xz-utils ;;
    425a68*) payload_method=bzip2 decompress=(bzip2 -dc) package=bzip2 ;;
    894c5a4f*) payload_method=lzo decompress=(lzop -dc) package=lzop ;;
    02214c18*) payload_method=lz4 decompress=(lz4 -dc) package=lz4 ;;
    28b52ffd*) payload_method=zstd decompress=(zstd -dc) package=zstd ;;
    *) die "$img: unknown compression (payload starts with $magic)" ;;
    esac
    note "$name: payload is $payload_method, $payload_stream bytes at offset $payload_start, $payload_size bytes uncompressed"
    command -v "${decompress[0]}" >/dev/null ||
        die "decompressing $payload_method needs '${decompress[0]}': apt-get install $package"
}

# Decompresses the payload of bzImage $1 (inspected) into $2.
extract_vmlinux() {
    local img=$1 out=$2
    dd if="$img" iflag=skip_bytes,count_bytes skip="$payload_start" count="$payload_stream" bs=1M status=none |
        "${decompress[@]}" >"$out.tmp" || die "${decompress[*]} failed on the payload of $img"
    [[ $(hex "$out.tmp" 0 4) == 7f454c46 ]] || die "the payload of $img does not decompress to an ELF file"
    [[ $(stat -c %s "$out.tmp") == "$payload_size" ]] ||
        die "the payload of $img decompresses to $(stat -c %s "$out.tmp") bytes, its trailer says $payload_size"
    mv "$out.tmp" "$out"
}

# Reports the vmlinux's entry and its Xen PVH entry note, if any.
describe_vmlinux() {
    local elf=$1
    if ! command -v readelf >/dev/null; then
        note "readelf not found (apt-get install binutils): not checking $(basename "$elf") for a PVH note"
        return
    fi
    note "$(basename "$elf"): ELF entry $(readelf -h "$elf" | sed -n 's/^ *Entry point address: *//p')"
    # XEN_ELFNOTE_PHYS32_ENTRY is note type 18 (0x12) with owner "Xen".
    local desc
    desc=$(readelf -n "$elf" | sed -n -E '/^ *Xen .*(\(0x00000012\)|PHYS32_ENTRY)/{n;s/^ *description data: //p;q}')
    if [[ -n $desc ]]; then
        local bytes addr="" b
        read -ra bytes <<<"$desc"
        for b in "${bytes[@]}"; do addr=$b$addr; done
        note "$(basename "$elf"): Xen PVH note (XEN_ELFNOTE_PHYS32_ENTRY, ${#bytes[@]}-byte descriptor): entry $(printf '%#x' $((16#$addr)))"
    else
        note "$(basename "$elf"): no Xen PVH note (XEN_ELFNOTE_PHYS32_ENTRY)"
    fi
}

if ((want_vmlinux)); then
    vmlinux=$(dirname "$vmlinuz")/vmlinux-${vmlinuz##*/vmlinuz-}
    inspect_bzimage "$vmlinuz"
    if [[ -f $vmlinux ]]; then
        note "reusing $vmlinux"
    else
        extract_vmlinux "$vmlinuz" "$vmlinux"
    fi
    describe_vmlinux "$vmlinux"
    echo "$vmlinuz"
    echo "$vmlinux"
else
    echo "$vmlinuz"
fi
