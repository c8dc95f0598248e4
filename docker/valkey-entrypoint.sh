#!/bin/sh
# Valkey keeps ACL users (tenant cache users) in an aclfile so they survive a restart;
# the default user's password comes from the environment, never from the command line.
set -eu
: "${HOSTPLANE_VALKEY_PASSWORD:?set HOSTPLANE_VALKEY_PASSWORD}"
ACL=/data/users.acl
if [ ! -s "$ACL" ]; then
  umask 077
  printf 'user default on #%s ~* &* +@all\n' "$(printf '%s' "$HOSTPLANE_VALKEY_PASSWORD" | sha256sum | cut -d' ' -f1)" > "$ACL"
fi
exec valkey-server --bind 127.0.0.1 --port "${HOSTPLANE_VALKEY_PORT:-6390}" --dir /data --appendonly yes --aclfile "$ACL"
