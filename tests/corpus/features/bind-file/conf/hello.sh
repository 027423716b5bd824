#!/bin/sh
# Executable in the repository (git mode 100755): shipped with its execute bit, it runs.
echo corpus-bind-exec-v1
