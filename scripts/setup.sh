# Set-up steps shared by ./demo.sh and ./scripts/test.sh (POSIX sh; sourced from the repository root, never run).
#   r3d_project_venv PREFIX       .venv exists and is installed (scripts/install.sh) for the current pyproject.toml
#   r3d_apt_install PREFIX PKG... install Debian packages when this shell can (root, or sudo without a password);
#                                 otherwise print the one command to run and return 1
# PREFIX names the caller in messages ("demo", "test"). PYTHON picks the interpreter that creates .venv.

r3d_say() {
    echo "[$1] $2"
}

r3d_apt_install() {
    prefix=$1
    shift
    if ! command -v apt-get >/dev/null 2>&1; then
        r3d_say "$prefix" "missing system package(s) $*: install them with your system's package manager"
        return 1
    fi
    if [ "$(id -u)" -eq 0 ]; then
        as_root=""
    elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
        as_root="sudo -n"
    else
        r3d_say "$prefix" "missing system package(s) $*; to install them run: sudo apt-get install -y $*"
        return 1
    fi
    r3d_say "$prefix" "installing system package(s) $* with apt-get"
    # shellcheck disable=SC2086  # as_root is empty or two words on purpose
    if $as_root apt-get install -y -qq "$@" >/dev/null 2>&1 \
        || { $as_root apt-get update -qq >/dev/null 2>&1 && $as_root apt-get install -y -qq "$@" >/dev/null 2>&1; }; then
        return 0
    fi
    r3d_say "$prefix" "apt-get could not install $*; to install them run: sudo apt-get install -y $*"
    return 1
}

r3d_project_venv() {
    prefix=$1
    venv=.venv
    stamp="$venv/.r3d-installed"
    python="${PYTHON:-python3}"
    if [ ! -x "$venv/bin/python" ]; then
        if ! command -v "$python" >/dev/null 2>&1; then
            r3d_say "$prefix" "no $python on PATH: install Python >= 3.11, or set PYTHON=/path/to/python3.11"
            return 1
        fi
        if ! "$python" -c "import ensurepip, venv" >/dev/null 2>&1; then
            # Debian and Ubuntu ship venv's pip bootstrap separately
            r3d_apt_install "$prefix" python3-venv || return 1
        fi
        r3d_say "$prefix" "creating $venv with $python"
        "$python" -m venv "$venv" || return 1
    fi
    # (Re)install when the environment is new or pyproject.toml changed since the last install.
    want="$(cksum < pyproject.toml)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        r3d_say "$prefix" "installing the project into $venv (first run: a few minutes)"
        PATH="$PWD/$venv/bin:$PATH" VIRTUAL_ENV="$PWD/$venv" ./scripts/install.sh || return 1
        echo "$want" > "$stamp"
    fi
}
