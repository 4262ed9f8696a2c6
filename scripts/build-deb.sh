#!/usr/bin/env bash
# Builds dist/resilienced_<version>_<arch>.deb with Debian's own dpkg-deb:
# static binaries (CGO_ENABLED=0, so the package depends on nothing), the
# systemd units, sysusers.d and tmpfiles.d entries, the default config (a
# conffile), shell completions and man pages generated from the CLI, and
# maintainer scripts that enable and start the service on install, stop it
# and clean up on remove, and delete state on purge.
#
#	scripts/build-deb.sh            # or: make deb
#
# Environment: VERSION (default: git describe), GOARCH (default: the host's),
# SOURCE_DATE_EPOCH (default: the last commit's time; makes the build
# reproducible), OUT (default: dist).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

GO=${GO:-go}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
GOARCH=${GOARCH:-$($GO env GOARCH)}
OUT=${OUT:-dist}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

for tool in dpkg-deb gzip; do
	command -v "$tool" >/dev/null || { echo "build-deb: $tool is missing (apt-get install dpkg gzip)" >&2; exit 1; }
done

# A Debian version must start with a digit: v1.2.3-4-gabc → 1.2.3+4.gabc;
# an untagged tree → 0.0~git<commit time>.<hash>, so that later builds sort higher.
debian_version() {
	local v=$1
	if [[ $v =~ ^v?[0-9]+\.[0-9]+ ]]; then
		v=${v#v}
		echo "${v//-/+}" | tr -c 'A-Za-z0-9.+~\n' '.'
	else
		echo "0.0~git$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d%H%M%S).${v//-/.}" | tr -c 'A-Za-z0-9.+~\n' '.'
	fi
}
DEBVER=$(debian_version "$VERSION")
case $GOARCH in
amd64 | arm64 | riscv64 | s390x | ppc64le) DEBARCH=${GOARCH/ppc64le/ppc64el} ;;
arm) DEBARCH=armhf ;;
386) DEBARCH=i386 ;;
*) echo "build-deb: no Debian architecture for GOARCH=$GOARCH" >&2; exit 1 ;;
esac

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
install -d "$root/DEBIAN" "$root/usr/sbin" "$root/usr/bin" \
	"$root/lib/systemd/system" "$root/usr/lib/sysusers.d" "$root/usr/lib/tmpfiles.d" \
	"$root/etc/resilienced" "$root/usr/share/man/man1" "$root/usr/share/man/man5" "$root/usr/share/man/man8" \
	"$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
	"$root/usr/share/fish/vendor_completions.d" "$root/usr/share/doc/resilienced"

echo "build-deb: building static binaries ($VERSION, $GOARCH)"
ldflags="-s -w -X main.version=$VERSION"
CGO_ENABLED=0 GOOS=linux GOARCH=$GOARCH $GO build -trimpath -ldflags "$ldflags" -o "$root/usr/sbin/resilienced" ./cmd/resilienced
CGO_ENABLED=0 GOOS=linux GOARCH=$GOARCH $GO build -trimpath -ldflags "$ldflags" -o "$root/usr/bin/resilientctl" ./cmd/resilientctl

# The generators run the binaries just built; a cross build uses a host build.
host_ctl=$root/usr/bin/resilientctl host_daemon=$root/usr/sbin/resilienced
if [ "$GOARCH" != "$($GO env GOHOSTARCH)" ]; then
	host_ctl=$stage/resilientctl host_daemon=$stage/resilienced
	CGO_ENABLED=0 $GO build -ldflags "$ldflags" -o "$host_ctl" ./cmd/resilientctl
	CGO_ENABLED=0 $GO build -ldflags "$ldflags" -o "$host_daemon" ./cmd/resilienced
fi

echo "build-deb: man pages and completions"
# The documented socket default is the system one, whoever builds.
export RESILIENT_SOCKET=/run/resilienced/resilienced.sock
"$host_ctl" gen-man --source "resilienced $VERSION" --config-page "$stage/resilienced.yaml.5" "$stage/man1"
install -m 0644 "$stage"/man1/*.1 "$root/usr/share/man/man1/"
install -m 0644 "$stage/resilienced.yaml.5" "$root/usr/share/man/man5/"
date=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)
# resilienced uses the flag package: turn `resilienced -h` into roff.
"$host_daemon" -h 2>&1 | awk '
	/^  -/ {
		name = $1; sub(/^-/, "", name); gsub(/-/, "\\-", name)
		arg = (NF > 1) ? " \\fI" $2 "\\fR" : ""
		printf ".TP\n\\fB\\-\\-%s\\fR%s\n", name, arg; next
	}
	/^    \t/ { sub(/^    \t/, ""); gsub(/\\/, "\\e"); gsub(/-/, "\\-"); print; next }
' >"$stage/options.roff"
[ -s "$stage/options.roff" ] || { echo "build-deb: no options parsed from resilienced -h" >&2; exit 1; }
awk -v version="$VERSION" -v date="$date" -v opts="$stage/options.roff" '
	/^@OPTIONS@$/ { while ((getline l < opts) > 0) print l; next }
	{ gsub(/@VERSION@/, version); gsub(/@DATE@/, date); print }
' packaging/man/resilienced.8.in >"$root/usr/share/man/man8/resilienced.8"
gzip -9n "$root"/usr/share/man/man1/*.1 "$root/usr/share/man/man5/resilienced.yaml.5" "$root/usr/share/man/man8/resilienced.8"
"$host_ctl" completion bash >"$root/usr/share/bash-completion/completions/resilientctl"
"$host_ctl" completion zsh >"$root/usr/share/zsh/vendor-completions/_resilientctl"
"$host_ctl" completion fish >"$root/usr/share/fish/vendor_completions.d/resilientctl.fish"

install -m 0644 packaging/systemd/resilienced.service packaging/systemd/resilienced.socket "$root/lib/systemd/system/"
install -m 0644 packaging/sysusers.d/resilienced.conf "$root/usr/lib/sysusers.d/resilienced.conf"
install -m 0644 packaging/tmpfiles.d/resilienced.conf "$root/usr/lib/tmpfiles.d/resilienced.conf"
install -m 0644 packaging/resilienced.yaml "$root/etc/resilienced/resilienced.yaml"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$root/DEBIAN/"
echo /etc/resilienced/resilienced.yaml >"$root/DEBIAN/conffiles"
cat >"$root/usr/share/doc/resilienced/copyright" <<'EOF'
resilienced: https://github.com/resilienced/resilienced
See the source repository for the authors and the license.
EOF

"$host_daemon" --check --config "$root/etc/resilienced/resilienced.yaml" >/dev/null ||
	{ echo "build-deb: the default config does not pass resilienced --check" >&2; exit 1; }

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: resilienced
Version: $DEBVER
Architecture: $DEBARCH
Maintainer: resilienced developers <resilienced@users.noreply.github.com>
Installed-Size: $size
Section: admin
Priority: optional
Homepage: https://github.com/resilienced/resilienced
Recommends: systemd
Description: node daemon that keeps fleets of AI-agent processes serving
 resilienced runs every agent in its own cgroup under an OTP-style
 supervisor, checks every output against a contract, and replaces an agent
 that breaks it with a warm spare holding the last validated context, so
 that callers see a correct answer instead of a failure. It is a systemd
 service (Type=notify, watchdog, socket activation, delegated cgroups)
 driven by resilientctl over a local socket.
EOF
(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$OUT"
deb=$OUT/resilienced_${DEBVER}_${DEBARCH}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "build-deb: $deb ($(du -h "$deb" | cut -f1))"
