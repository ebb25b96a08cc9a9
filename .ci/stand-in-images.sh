#!/usr/bin/env bash
# Makes local stand-ins for the base images that visit-server/Dockerfile and the front
# proxy name, from Debian packages only, tagged with exactly those names, so that
# `podman build` runs the Dockerfile unchanged with no registry but Debian's (and crates.io,
# which the Dockerfile itself uses). Sourced by .ci/steps/50-image; run it by hand with
#
#   .ci/stand-in-images.sh            # builds whichever of the three is missing
#
#   rust:<X.Y>-slim-bookworm                  Debian bookworm (mmdebstrap: gcc, libc6-dev)
#                                             plus this machine's own Rust toolchain and
#                                             CA bundle, laid out as the official image
#                                             (RUSTUP_HOME, CARGO_HOME, PATH)
#   gcr.io/distroless/cc-debian12:debug-nonroot
#                                             libc6, libgcc-s1, tzdata, netbase, the CA
#                                             bundle (apt-get download + dpkg-deb -x), a
#                                             static busybox in /busybox, user nonroot
#                                             (65532), as distroless lays them out
#   docker.io/nginxinc/nginx-unprivileged:<tag>
#                                             the same runtime plus Debian's nginx and its
#                                             libraries, STOPSIGNAL SIGQUIT like the real one
#
# Each is labelled visit-journal.stand-in=true. They stand in for the real images in CI
# only: never push them.
set -euo pipefail

# podman's flags on these machines: crun fails on the hybrid cgroup hierarchy.
podman_() { podman --runtime runc --cgroup-manager=cgroupfs "$@"; }

stand_in_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# The toolchain's X.Y, for the builder's tag (the Dockerfile's RUST_VERSION).
rust_minor() { rustc --version | awk '{split($2, v, "."); print v[1] "." v[2]}'; }
builder_image() { echo "docker.io/library/rust:$(rust_minor)-slim-bookworm"; }
runtime_image=gcr.io/distroless/cc-debian12:debug-nonroot
# The image the front-proxy component runs, as it names it.
proxy_image() {
    awk '$1 == "image:" && /nginx-unprivileged/ {print $2}' \
        "$stand_in_root/k8s/components/front-proxy/front-proxy.yaml"
}

# Downloads the named Debian packages (no dependencies resolved: the lists below are
# complete for what runs) and unpacks them into $1.
unpack_debs() {
    local rootfs=$1 debs
    shift
    debs=$(mktemp -d)
    # As root, into a directory of our own: no need for apt's _apt sandbox user.
    (cd "$debs" && apt-get download -q -o APT::Sandbox::User=root "$@" >/dev/null)
    for deb in "$debs"/*.deb; do
        dpkg-deb -x "$deb" "$rootfs"
    done
    rm -rf "$debs"
}

# A distroless-like root in $1: glibc, busybox in /busybox, root and nonroot users.
distroless_root() {
    local rootfs=$1 applet
    unpack_debs "$rootfs" libc6 libgcc-s1 tzdata netbase base-files busybox-static
    mkdir -p "$rootfs/busybox" "$rootfs/etc/ssl/certs" "$rootfs/home/nonroot" "$rootfs/root" "$rootfs/tmp"
    mv "$rootfs/bin/busybox" "$rootfs/busybox/busybox"
    for applet in $("$rootfs/busybox/busybox" --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$rootfs/busybox/$applet"
    done
    # distroless ships the CA bundle that Debian's ca-certificates generates.
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
        'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
        'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$rootfs/etc/passwd"
    printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$rootfs/etc/group"
    chown 65532:65532 "$rootfs/home/nonroot"
    chmod 0700 "$rootfs/home/nonroot" "$rootfs/root"
    chmod 1777 "$rootfs/tmp"
    # Documentation is no part of a runtime image.
    rm -rf "$rootfs/usr/share/doc" "$rootfs/usr/share/man" "$rootfs/usr/share/info"
}

import_root() { # rootfs image podman-import --change arguments...
    local rootfs=$1 image=$2
    shift 2
    tar --numeric-owner -C "$rootfs" -cf "$rootfs.tar" .
    podman_ import --quiet "$@" --change 'LABEL visit-journal.stand-in=true' \
        "$rootfs.tar" "$image" >/dev/null
    rm -f "$rootfs.tar"
    echo "built stand-in $image ($(podman_ image inspect --format '{{.Size}}' "$image" | numfmt --to=iec))"
}

distroless_changes=(
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/busybox'
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt'
    --change 'USER 65532'
    --change 'WORKDIR /home/nonroot'
)

build_runtime() {
    local work
    work=$(mktemp -d)
    distroless_root "$work/root"
    import_root "$work/root" "$runtime_image" "${distroless_changes[@]}" \
        --change 'ENTRYPOINT ["/busybox/sh"]'
    rm -rf "$work"
}

build_proxy() {
    local work
    work=$(mktemp -d)
    distroless_root "$work/root"
    unpack_debs "$work/root" nginx libcrypt1 libpcre2-8-0 libssl3 zlib1g
    import_root "$work/root" "$(proxy_image)" "${distroless_changes[@]}" \
        --change 'STOPSIGNAL SIGQUIT' --change 'EXPOSE 8080' \
        --change 'CMD ["nginx", "-g", "daemon off;"]'
    rm -rf "$work"
}

build_builder() {
    local work toolchain host minor ca_bundle
    work=$(mktemp -d)
    toolchain=$(rustc --print sysroot)
    host=$(rustc -vV | awk '$1 == "host:" {print $2}')
    minor=$(rust_minor)
    # This machine's CA bundle, which is what reaches crates.io from here (the Dockerfile's
    # `cargo install` and `cargo chef cook` download crates).
    ca_bundle=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
    command -v mmdebstrap >/dev/null || {
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
    }
    # The official image's layout: the toolchain under RUSTUP_HOME, cargo and rustc on PATH
    # in CARGO_HOME/bin (where `cargo install` puts cargo-chef too). Its docs stay out.
    mmdebstrap --quiet --variant=minbase --include=gcc,libc6-dev,ca-certificates \
        --customize-hook="mkdir -p \"\$1/usr/local/rustup/toolchains/$minor-$host\" \"\$1/usr/local/cargo/bin\"" \
        --customize-hook="tar -C '$toolchain' --exclude=./share/doc -cf - . | tar -C \"\$1/usr/local/rustup/toolchains/$minor-$host\" -xf -" \
        --customize-hook="for b in cargo rustc rustdoc; do ln -s ../../rustup/toolchains/$minor-$host/bin/\$b \"\$1/usr/local/cargo/bin/\$b\"; done" \
        --customize-hook="cp '$ca_bundle' \"\$1/etc/ssl/certs/ca-certificates.crt\"" \
        --customize-hook='rm -rf "$1/var/cache/apt/archives"/*.deb "$1/var/lib/apt/lists"/*' \
        bookworm "$work/root.tar" \
        "deb http://deb.debian.org/debian bookworm main" \
        "deb http://deb.debian.org/debian bookworm-updates main" \
        "deb http://deb.debian.org/debian-security bookworm-security main"
    podman_ import --quiet \
        --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
        --change 'ENV CARGO_HOME=/usr/local/cargo' \
        --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change "ENV RUST_VERSION=$(rustc --version | awk '{print $2}')" \
        --change 'LABEL visit-journal.stand-in=true' \
        --change 'CMD ["bash"]' \
        "$work/root.tar" "$(builder_image)" >/dev/null
    rm -rf "$work"
    echo "built stand-in $(builder_image) ($(podman_ image inspect --format '{{.Size}}' "$(builder_image)" | numfmt --to=iec))"
}

# Builds each stand-in that is not in podman's storage yet (it persists across CI runs).
# An image of that name that is no stand-in (pulled from its registry) is left alone.
stand_in_images() {
    local image updated=
    for image in "$runtime_image" "$(proxy_image)" "$(builder_image)"; do
        if podman_ image exists "$image"; then
            echo "have $image"
            continue
        fi
        if [ -z "$updated" ]; then
            apt-get update -qq
            updated=1
        fi
        case $image in
            "$runtime_image") build_runtime ;;
            "$(builder_image)") build_builder ;;
            *) build_proxy ;;
        esac
    done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    stand_in_images
fi
