#!/bin/sh
# Container entrypoint for par-server.
#
#   docker run IMAGE                  -> migrate, then serve on 0.0.0.0:${PAR_PORT:-8000}
#   docker run IMAGE --workers 4      -> same; arguments that start with "-"
#                                        are appended to `par-server serve`
#   docker run IMAGE par-server migrate
#   docker run IMAGE sh               -> any other command is exec'd as given
#                                        (no migration, no server)
#
# The port is PAR_PORT, not a --port argument: the image's HEALTHCHECK
# (`par-server healthcheck`) reads PAR_PORT too, and cannot see arguments.
#
# Migrations: by default every container start runs `par-server migrate`
# (alembic upgrade head) before serving. That is fine for one replica. With
# several replicas, run the migration once as a one-off job instead:
#
#   docker compose run --rm par-server par-server migrate
#
# and start the replicas with PAR_SKIP_MIGRATE=1 so that they do not race each
# other on the schema.
set -eu

# A JSON line like the server's, so that the container writes one log stream.
log() {
    printf '{"ts":"%s","level":"%s","logger":"entrypoint","msg":"%s"}\n' \
        "$(date -u +%Y-%m-%dT%H:%M:%S.000+00:00)" "$1" "$2" >&2
}

case "${1:-}" in
    '' | -*)
        for argument in "$@"; do
            case "$argument" in
                --port | --port=*)
                    log error "set PAR_PORT instead of --port (the HEALTHCHECK probes PAR_PORT)"
                    exit 2
                    ;;
            esac
        done
        case "${PAR_SKIP_MIGRATE:-0}" in
            1 | true | yes)
                log info "PAR_SKIP_MIGRATE is set, not running migrations"
                ;;
            *)
                log info "running database migrations"
                par-server migrate
                ;;
        esac
        # exec: the server becomes PID 1 and receives SIGTERM from `docker stop`.
        exec par-server serve --host 0.0.0.0 --port "${PAR_PORT:-8000}" "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
