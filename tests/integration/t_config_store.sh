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

reload() {
        # the daemon runs the config above (debug, cidr 20, vcpu 3); the file changes under it
        cat >"$CONF" <<'TOML'
log_level = "warn"
cidr = 22
stats_poll_interval = "2s"

[vm_defaults]
vcpu = 2
TOML
        "$BANGER" --json config show >"$TMP/pre.json" || return 1
        jq -e '.config.log_level.value == "debug" and (.file_differs | length) == 4 and
               (.file_differs[] | select(.key == "cidr") | .needs_restart and .file == 22 and .running == 20) and
               (.file_differs[] | select(.key == "vm_defaults.vcpu") | (.needs_restart | not) and .file == 2)' \
                "$TMP/pre.json" >/dev/null || { cat "$TMP/pre.json"; return 1; }
        "$BANGER" config show 2>"$TMP/pre.err" | grep -Eq '^log_level +"debug" .*\* file: "warn" \(banger daemon reload\)$' &&
        "$BANGER" config show 2>/dev/null | grep -Eq '^cidr +20 .*\* file: 22 \(needs a restart\)$' &&
        grep -q "4 value(s) differ from the file" "$TMP/pre.err" || { "$BANGER" config show; return 1; }
        local pid; pid=$("$BANGER" --json ping | jq .pid)
        "$BANGER" daemon reload >"$TMP/rl.out" 2>&1 || { cat "$TMP/rl.out"; return 1; }
        grep -Eq '^  log_level +"debug" -> "warn"$' "$TMP/rl.out" && grep -Eq '^  vm_defaults.vcpu +3 -> 2$' "$TMP/rl.out" &&
        grep -Eq '^  stats_poll_interval +"10s" -> "2s"$' "$TMP/rl.out" &&
        grep -Eq '^  cidr +20 -> 22  \(needs a restart' "$TMP/rl.out" || { cat "$TMP/rl.out"; return 1; }
        "$BANGER" --json config show >"$TMP/post.json" || return 1
        jq -e '.config.log_level.value == "warn" and .config.vm_defaults.vcpu.value == 2 and .config.cidr.value == 20 and
               .file_differs == [{"key":"cidr","running":20,"file":22,"needs_restart":true}]' "$TMP/post.json" >/dev/null ||
                { cat "$TMP/post.json"; return 1; }
        grep -q "reload: cidr = 22 needs a restart of bangerd" "$LOG" || return 1
        # a file that does not load changes nothing
        printf 'log_level = "error"\n\n[vm_defaults]\nmemory_mib = "lots"\n' >"$CONF"
        local rc=0; "$BANGER" daemon reload >"$TMP/bad.out" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q 'config.toml:4: vm_defaults.memory_mib: must be a size.*the running config is kept' "$TMP/bad.out" ||
                { cat "$TMP/bad.out"; return 1; }
        "$BANGER" --json config show | jq -e '.config.log_level.value == "warn" and (.file_error | test("memory_mib"))' >/dev/null &&
        "$BANGER" config show 2>&1 >/dev/null | grep -q "the file does not load, the daemon runs the config above" || return 1
        # SIGHUP reloads (it no longer stops the daemon)
        printf 'log_level = "debug"\n' >"$CONF"
        kill -HUP "$pid"
        local i
        for i in $(seq 50); do
                [ "$("$BANGER" --json config show | jq -r .config.log_level.value)" = debug ] && break
                sleep 0.1
        done
        expect_eq "$("$BANGER" --json config show | jq -r .config.log_level.value)" debug &&
        expect_eq "$("$BANGER" --json ping | jq .pid)" "$pid" &&
        grep -q 'reload: log_level "warn" -> "debug"' "$LOG" # logged at the new level
}
t "daemon reload and SIGHUP apply live keys, keep restart-only keys (config show marks them) and keep the config when the file is bad" reload

t "--check-migrations after start is up to date (exit 0)" expect_eq "$(check_migrations_rc)" 0

check_json() {
        "$BANGERD" --check-migrations --json | jq -e '.state == "up_to_date" and .pending == 0 and .latest_applied == .latest_known' >/dev/null
}
t "--check-migrations --json has state, pending, latest" check_json

check_system() { # a system install's database, found through its install record
        local root="$TMP/sysmig"
        mkdir -p "$root/state" && sqlite3 "$DB" ".backup '$root/state/state.db'" || return 1
        cat >"$root/install.toml" <<TOML
[owner]
user = "nobody"
uid = 65534
gid = 65534
home = "/nonexistent"

[paths]
prefix = "$root/usr"
config = "$root/config.toml"
state = "$root/state"
cache = "$root/cache"
runtime = "$root/run"
helper_runtime = "$root/run-root"
TOML
        "$BANGERD" --check-migrations --system --install "$root/install.toml" --json >"$TMP/sysmig.json" ||
                { cat "$TMP/sysmig.json"; return 1; }
        jq -e --arg db "$root/state/state.db" '.state == "up_to_date" and .db == $db' "$TMP/sysmig.json" >/dev/null || return 1
        local rc=0; BANGER_INSTALL_FILE="$root/install.toml" "$BANGERD" --check-migrations --system >/dev/null 2>&1 || rc=$?
        expect_eq "$rc" 0 || return 1
        rm "$root/state/state.db"*; rc=0
        "$BANGERD" --check-migrations --system --install "$root/install.toml" >/dev/null 2>&1 || rc=$?
        expect_eq "$rc" 1 && [ ! -e "$root/run" ] && [ ! -e "$root/cache" ] # read-only: nothing made
}
t "--check-migrations --system reads the install's database (read-only; exit 0, then 1 once it is gone)" check_system

schema() {
        "$BANGER" daemon stop >/dev/null
        expect_eq "$(sqlite3 "$DB" 'PRAGMA journal_mode')" wal &&
        expect_eq "$(sqlite3 "$DB" 'SELECT group_concat(id || ":" || name) FROM schema_migrations ORDER BY id')" "1:baseline,2:operations,3:vm_states,4:vm_isolate,5:vm_forwards,6:vm_net,7:vm_vmm" &&
        sqlite3 "$DB" '.tables' | grep -q vms
}
t "the store is WAL with numbered migrations recorded" schema

reload_down() {
        local rc=0; "$BANGER" daemon reload >"$TMP/rd.out" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q "bangerd is not running" "$TMP/rd.out" && [ ! -e "$SOCK" ]
}
t "daemon reload with no daemon says so (exit 1) and starts none" reload_down

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
