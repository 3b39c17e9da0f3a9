#!/usr/bin/env bash
# The Debian package, tested as an admin and a user would meet it (issue 13):
#   1. build it (scripts/package.sh), run lintian (no error; every warning must be listed
#      with its reason in docs/packaging.md), unpack it and check every path;
#   2. install it with dpkg -i on this machine and, as a fresh non-root account, in login
#      bash, zsh and fish started from its own startup files: `man -w` finds the pages,
#      each shell loads the packaged completion file, the packaged init scripts work when
#      sourced (reserve exports, release restores), `status` works on the packaged state
#      directory after root's `canhazgpu admin`;
#   3. reinstall (an upgrade in place) keeps a reservation and the admin's config edit;
#      dpkg -r keeps the state and the config; a purge keeps a state directory that holds
#      a reservation and removes one that holds none.
# It ends with the package purged and the account deleted, and cleans up after an earlier
# run that died half way, so it can be rerun. It refuses to run on a machine where
# canhazgpu is installed or has state of its own, since it would replace or remove them.
#
# Needs root (uses sudo otherwise) and Debian; installs lintian, man-db, bash-completion,
# zsh, fish and dpkg-dev when missing. Usage: scripts/package-test.sh [path/to/canhazgpu]
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
# Built as the calling user, so that target/ never gets files owned by root.
bin=${1:-}
if [[ -z $bin ]]; then
    cargo build --release --locked --quiet
    bin=target/release/canhazgpu
fi
bin=$(realpath "$bin")
if ((EUID != 0)); then
    exec sudo "$0" "$bin"
fi

user=chg-pkgtest
marker=/var/tmp/canhazgpu-package-test.in-progress
state_dir=/var/lib/canhazgpu

step() { printf '== %s (%ds)\n' "$*" $((SECONDS - started)); }
fail() {
    echo "scripts/package-test.sh: FAILED: $*" >&2
    exit 1
}

packages=(lintian man-db bash-completion zsh fish dpkg-dev passwd)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
        missing+=("$package")
done
if ((${#missing[@]})); then
    step "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

# Everything this test creates outside the repository, for the cleanup.
clean_machine() {
    dpkg --purge canhazgpu >/dev/null 2>&1 || :
    rm -rf "$state_dir" /etc/canhazgpu
    if id "$user" >/dev/null 2>&1; then
        userdel --remove "$user" 2>/dev/null || :
    fi
    rm -f "$marker"
}
if [[ -e $marker ]]; then
    step "cleaning up after an earlier run"
    clean_machine
fi
for path in /usr/bin/canhazgpu "$state_dir" /etc/canhazgpu /var/lib/dpkg/info/canhazgpu.list; do
    if [[ -e $path ]]; then
        fail "canhazgpu is already installed or has state here ($path exists); this test" \
            "installs and purges the package, which would replace or remove it. Run it on" \
            "a machine without canhazgpu (CI does)."
    fi
done
if id "$user" >/dev/null 2>&1; then
    fail "the account $user exists already; this test creates and deletes it"
fi
: >"$marker"
work=$(mktemp -d)
chmod 0755 "$work"
finish() {
    local status=$?
    clean_machine
    rm -rf "$work"
    if ((status == 0)); then
        echo "package test passed in $((SECONDS - started)) s"
    fi
}
trap finish EXIT

step "building the package"
# As a packager with a private umask would: nothing of it may reach the package.
deb=$(umask 077 && scripts/package.sh "$bin" "$work/deb")
echo "$deb"

step "lintian"
# --fail-on error: a non-zero exit is an error tag or lintian itself failing.
if ! lintian --fail-on error --pedantic --display-info "$deb" >"$work/lintian.txt" 2>&1; then
    cat "$work/lintian.txt"
    fail "lintian reports errors or did not run"
fi
grep -v '^running with root privileges' "$work/lintian.txt" || :
while read -r tag; do
    grep -q -- "\`$tag\`" docs/packaging.md ||
        fail "lintian warning $tag is not listed (with its reason) in docs/packaging.md"
done < <(sed -n 's/^W: [^ ]* \([^ ]*\).*/\1/p' "$work/lintian.txt" | sort -u)

step "unpacking and checking every path"
dpkg-deb -x "$deb" "$work/root"
dpkg-deb -e "$deb" "$work/control"
expect_file() { # expect_file MODE PATH
    local mode
    mode=$(stat -c %a "$work/root/$2" 2>/dev/null) || fail "the package has no $2"
    [[ $mode == "$1" ]] || fail "$2 has mode $mode, not $1"
}
expect_file 755 usr/bin/canhazgpu
expect_file 644 usr/share/bash-completion/completions/canhazgpu
expect_file 644 usr/share/zsh/vendor-completions/_canhazgpu
expect_file 644 usr/share/fish/vendor_completions.d/canhazgpu.fish
for page in man/*.1; do
    expect_file 644 "usr/share/man/man1/$(basename "$page").gz"
    zcat "$work/root/usr/share/man/man1/$(basename "$page").gz" | cmp -s - "$page" ||
        fail "usr/share/man/man1/$(basename "$page").gz is not man/$(basename "$page")"
done
expect_file 644 usr/lib/tmpfiles.d/canhazgpu.conf
grep -qx 'd /var/lib/canhazgpu 0777 root root -' "$work/root/usr/lib/tmpfiles.d/canhazgpu.conf" ||
    fail "the tmpfiles.d entry does not create /var/lib/canhazgpu with mode 0777"
expect_file 644 etc/canhazgpu/config.toml
grep -qx /etc/canhazgpu/config.toml "$work/control/conffiles" ||
    fail "/etc/canhazgpu/config.toml is not a conffile"
for doc in README.md.gz shell.md.gz changelog.Debian.gz copyright; do
    expect_file 644 "usr/share/doc/canhazgpu/$doc"
done
for shell in bash zsh fish; do
    expect_file 644 "usr/share/canhazgpu/init.$shell"
    "$work/root/usr/bin/canhazgpu" init "$shell" | cmp -s - "$work/root/usr/share/canhazgpu/init.$shell" ||
        fail "usr/share/canhazgpu/init.$shell is not what \`canhazgpu init $shell\` prints"
done
cmp -s completions/canhazgpu.bash "$work/root/usr/share/bash-completion/completions/canhazgpu" ||
    fail "the packaged bash completion is not completions/canhazgpu.bash"
[[ ! -e $work/root/var/lib/canhazgpu ]] ||
    fail "the package must not own /var/lib/canhazgpu (dpkg -r would then remove it)"

install_package() {
    # Some images tell dpkg to drop manual pages and docs; this package's are tested.
    dpkg -i --path-include='/usr/share/man/man1/canhazgpu*' \
        --path-include='/usr/share/doc/canhazgpu/*' "$deb" >/dev/null
}

step "dpkg -i"
install_package
[[ $(stat -c %a "$state_dir") == 777 ]] || fail "$state_dir has mode $(stat -c %a "$state_dir"), not 777"
canhazgpu admin --gpus 2

step "a fresh account, in login bash, zsh and fish"
useradd --create-home --shell /bin/bash "$user"
home=$(getent passwd "$user" | cut -d: -f6)
# What README's Install section tells users to add to their startup files.
echo 'source /usr/share/canhazgpu/init.bash' >>"$home/.bashrc"
printf '%s\n' 'autoload -Uz compinit && compinit' 'source /usr/share/canhazgpu/init.zsh' \
    >"$home/.zshrc"
mkdir -p "$home/.config/fish"
echo 'source /usr/share/canhazgpu/init.fish' >"$home/.config/fish/config.fish"
chown -R "$user:" "$home"

# Each shell's checks print "ok: ..." lines and trace every command on stderr (shown
# when they fail, its last command is the failed check).
cat >"$work/check.bash" <<'EOF'
set -x
man -w canhazgpu >/dev/null && man -w canhazgpu-reserve >/dev/null || exit 1
echo "ok: man -w finds $(man -w canhazgpu)"
MANPAGER=cat MANWIDTH=80 man canhazgpu-run 2>/dev/null | grep -q '^EXAMPLES' || exit 1
_completion_loader canhazgpu
complete -p canhazgpu | grep -q -- '-F _canhazgpu ' || exit 1
shopt -s extdebug
[[ $(declare -F _canhazgpu) == *' /usr/share/bash-completion/completions/canhazgpu' ]] || exit 1
shopt -u extdebug
COMP_WORDS=(canhazgpu res) COMP_CWORD=1 COMP_LINE='canhazgpu res' COMP_POINT=13
_canhazgpu canhazgpu res canhazgpu
[[ ${COMPREPLY[*]} == reserve ]] || exit 1
echo "ok: bash-completion's loader loads the packaged completion"
[[ $(type -t canhazgpu) == function ]] || exit 1
canhazgpu status | grep -q '^GPU 1: AVAILABLE' || exit 1
canhazgpu reserve --gpus 1 --duration 10m 2>/dev/null
[[ ${CUDA_VISIBLE_DEVICES-} =~ ^[01]$ ]] || exit 1
canhazgpu status | grep -q "IN USE by $USER" || exit 1
canhazgpu release 2>/dev/null
[[ -z ${CUDA_VISIBLE_DEVICES-} ]] || exit 1
echo "ok: the sourced init.bash reserves into the shell and releases"
EOF
cat >"$work/check.zsh" <<'EOF'
setopt xtrace
(( ${fpath[(Ie)/usr/share/zsh/vendor-completions]} )) || exit 1
[[ ${_comps[canhazgpu]-} == _canhazgpu ]] || exit 1
autoload +X _canhazgpu
[[ $(whence -v _canhazgpu) == *' from /usr/share/zsh/vendor-completions/_canhazgpu' ]] || exit 1
echo "ok: \$fpath has the vendor directory and autoload finds _canhazgpu there"
man -w canhazgpu-status >/dev/null || exit 1
echo "ok: man -w finds canhazgpu-status"
[[ $(whence -w canhazgpu) == 'canhazgpu: function' ]] || exit 1
canhazgpu reserve --gpus 2 --duration 10m 2>/dev/null
[[ ${CUDA_VISIBLE_DEVICES-} == (0,1|1,0) ]] || exit 1
canhazgpu release 2>/dev/null
[[ -z ${CUDA_VISIBLE_DEVICES-} ]] || exit 1
echo "ok: the sourced init.zsh reserves into the shell and releases"
EOF
cat >"$work/check.fish" <<'EOF'
set fish_trace 1
contains /usr/share/fish/vendor_completions.d $fish_complete_path; or exit 1
set -l first
for dir in $fish_complete_path
    if test -e $dir/canhazgpu.fish
        set first $dir
        break
    end
end
test "$first" = /usr/share/fish/vendor_completions.d; or exit 1
set -l offered (complete -C 'canhazgpu ' | string replace -r '\t.*' '')
contains reserve $offered; and contains status $offered; or exit 1
contains generate-man $offered; and exit 1
echo "ok: fish completes canhazgpu from its vendor directory"
man -w canhazgpu-init >/dev/null; or exit 1
echo "ok: man -w finds canhazgpu-init"
test (type -t canhazgpu) = function; or exit 1
canhazgpu reserve --gpus 1 --duration 10m 2>/dev/null
string match -qr '^[01]$' -- "$CUDA_VISIBLE_DEVICES"; or exit 1
canhazgpu release 2>/dev/null
set -q CUDA_VISIBLE_DEVICES; and exit 1
echo "ok: the sourced init.fish reserves into the shell and releases"
EOF
chmod 0644 "$work"/check.*
as_user() { # as_user SHELL ARGS...: a fresh login shell of the account
    local shell=$1
    shift
    # su -l: a clean login environment; TERM=dumb, as a script or a cron job has it.
    su --login "$user" --shell "$shell" --command "TERM=dumb $(printf '%q ' "$@")" </dev/null
}
run_checks() { # run_checks NAME SHELL ARGS...
    local name=$1 out
    shift
    if ! out=$(as_user "$@" 2>"$work/stderr"); then
        printf '%s\n' "$out"
        cat "$work/stderr" >&2
        fail "a check in $name failed: the last command traced above"
    fi
    printf '%s\n' "$out"
}
run_checks bash /bin/bash bash --login -i "$work/check.bash"
run_checks zsh /usr/bin/zsh zsh --login -i "$work/check.zsh"
run_checks fish /usr/bin/fish fish --login "$work/check.fish"

step "an upgrade in place keeps reservations and the admin's configuration"
as_user /bin/bash canhazgpu reserve --gpus 1 --duration 1h --note 'held across upgrades' \
    >/dev/null 2>&1
sed -i 's/^# default_duration = "8h"$/default_duration = "2h"/' /etc/canhazgpu/config.toml
install_package
grep -qx 'default_duration = "2h"' /etc/canhazgpu/config.toml ||
    fail "reinstalling lost the admin's edit of /etc/canhazgpu/config.toml"
canhazgpu status | grep -q "IN USE by $user.*held across upgrades" ||
    fail "reinstalling lost the reservation: $(canhazgpu status 2>&1)"

step "dpkg -r keeps the state and the configuration"
dpkg -r canhazgpu >/dev/null
[[ ! -e /usr/bin/canhazgpu && ! -e /usr/share/man/man1/canhazgpu.1.gz ]] ||
    fail "dpkg -r left the binary or the manual"
grep -q '"user"' "$state_dir/state.json" || fail "dpkg -r lost the state"
[[ -e /etc/canhazgpu/config.toml ]] || fail "dpkg -r removed the configuration"

step "a purge keeps a state directory that holds a reservation"
dpkg --purge canhazgpu >/dev/null 2>"$work/purge.txt"
grep -q "$state_dir kept" "$work/purge.txt" || fail "the purge did not say it kept $state_dir"
[[ -e $state_dir/state.json ]] || fail "the purge removed a state that holds a reservation"
[[ ! -e /etc/canhazgpu ]] || fail "the purge left /etc/canhazgpu"

step "reinstalled, released, purged: nothing stays"
install_package
canhazgpu status | grep -q "IN USE by $user" || fail "the reinstalled package lost the reservation"
as_user /bin/bash canhazgpu release >/dev/null 2>&1
dpkg --purge canhazgpu >/dev/null
for path in "$state_dir" /etc/canhazgpu /usr/bin/canhazgpu /usr/share/canhazgpu \
    /usr/lib/tmpfiles.d/canhazgpu.conf /usr/share/doc/canhazgpu; do
    [[ ! -e $path ]] || fail "the purge left $path"
done
