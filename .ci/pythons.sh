# Sourced by .ci/run and .ci/smoke.sh: the supported Pythons and how to find one.
OLDEST_PYTHON=3.10  # keep in step with pyproject.toml's requires-python and classifiers
NEWEST_PYTHON=3.13

# find_python VERSION: print the path of a Python VERSION interpreter (pyenv's versions first, then
# pythonVERSION on PATH); say what is missing and return 1 when there is none.
find_python() {
  local version=$1 root candidate
  root=$(pyenv root 2>/dev/null || true)
  for candidate in ${root:+"$root"/versions/"$version".*/bin/python"$version"} \
                   "$(command -v "python$version" || true)"; do
    [ -n "$candidate" ] && [ -x "$candidate" ] || continue
    # pyenv's shims exist for every installed version but only run in the selected one: ask the interpreter.
    if [ "$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$version" ]; then
      echo "$candidate"
      return 0
    fi
  done
  echo "Python $version is missing: no python$version on PATH${root:+ nor in $root/versions}." \
       "Install it (e.g. pyenv install $version) - CI tests every supported Python and does not skip one." >&2
  return 1
}
