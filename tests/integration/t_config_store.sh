#!/usr/bin/env bash
# config.toml and state.db through the real binaries.
. "$(dirname "$0")/lib.sh"
begin
mkdir -p "$(dirname "$CONF")"

check_migrations_rc() { local rc=0; "$BANGERD" --check-migrations >/dev/null 2>&1 || rc=$?; echo "$rc"; }

t "--check-migrations: no database yet is pending (exit 1)" expect_eq "$(check_migrations_rc)" 1

config_show() {
        cat >"$CONF" <<'TOML'
# a comment
log_level = "debug"
cidr = 20
unknown_thing = 1

[vm_defaults]
vcpu = 3
TOML
        "$BANGER" --json config show >"$TMP/cfg.json" || return 1
        jq -e '.config.log_level == {"value":"debug","source":"config","line":2} and
               .config.cidr.value == 20 and .config.vm_defaults.vcpu == {"value":3,"source":"config","line":7} and
               .config.vm_defaults.disk_size.source == "builtin" and
               (.config.vm_defaults.memory_mib.source == "auto" or .config.vm_defaults.memory_mib.source == "builtin") and
               .config.bridge_name == {"value":"br-fc","source":"default"} and
               (.config.warnings[0] | test("unknown key .unknown_thing. \\(line 4\\)"))' "$TMP/cfg.json" >/dev/null || return 1
        "$BANGER" config show 2>"$TMP/cfg.err" | grep -Eq '^cidr +20 +# config \(line 3\)$' &&
        grep -q "warning: unknown key 'unknown_thing'" "$TMP/cfg.err" &&
        grep -q "config .*unknown key 'unknown_thing'" "$LOG"
}
t "config show reports values with their provenance and warns on unknown keys" config_show

t "--check-migrations after start is up to date (exit 0)" expect_eq "$(check_migrations_rc)" 0

check_json() {
        "$BANGERD" --check-migrations --json | jq -e '.state == "up_to_date" and .pending == 0 and .latest_applied == .latest_known' >/dev/null
}
t "--check-migrations --json has state, pending, latest" check_json

schema() {
        "$BANGER" daemon stop >/dev/null
        expect_eq "$(sqlite3 "$DB" 'PRAGMA journal_mode')" wal &&
        expect_eq "$(sqlite3 "$DB" 'SELECT group_concat(id || ":" || name) FROM schema_migrations ORDER BY id')" "1:baseline,2:operations,3:vm_states,4:vm_isolate" &&
        sqlite3 "$DB" '.tables' | grep -q vms
}
t "the store is WAL with numbered migrations recorded" schema

bad_config() {
        printf 'log_level = "debug"\n\n[vm_defaults]\nmemory_mib = "lots"\n' >"$CONF"
        local rc=0; "$BANGER" ping >"$TMP/bad.out" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q "config.toml:4: vm_defaults.memory_mib: must be a size" "$TMP/bad.out" &&
        [ ! -e "$SOCK" ]
}
t "a bad config value stops the daemon from starting, naming key and line" bad_config
rm -f "$CONF"

newer_db() {
        sqlite3 "$DB" "INSERT INTO schema_migrations VALUES (999, 'from the future', 'x')"
        local before; before=$(sha256sum "$DB")
        expect_eq "$(check_migrations_rc)" 2 || return 1
        local rc=0; "$BANGER" ping >"$TMP/newer.out" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q 'database has migration 999; this binary knows up to' "$TMP/newer.out" &&
        expect_eq "$(sha256sum "$DB")" "$before"
}
t "a database newer than the binary is refused (exit 2) and left untouched" newer_db

corrupt_db() {
        rm -f "$DB" "$DB-wal" "$DB-shm"
        head -c 8192 /dev/urandom >"$DB"
        local before; before=$(sha256sum "$DB")
        expect_eq "$(check_migrations_rc)" 2 || return 1
        local rc=0; "$BANGER" ping >"$TMP/corrupt.out" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q "refusing to use .*state.db: .*(the file was left untouched)" "$TMP/corrupt.out" &&
        expect_eq "$(sha256sum "$DB")" "$before" && [ ! -e "$DB-wal" ]
}
t "a corrupt database is refused with a clear message and left untouched" corrupt_db

foreign_db() {
        rm -f "$DB"
        sqlite3 "$DB" 'CREATE TABLE notes(x); INSERT INTO notes VALUES (1)'
        local before; before=$(sha256sum "$DB")
        local rc=0; "$BANGER" ping >"$TMP/foreign.out" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q 'not a banger database' "$TMP/foreign.out" &&
        expect_eq "$(sha256sum "$DB")" "$before"
}
t "a foreign SQLite database is refused and left untouched" foreign_db

finish
