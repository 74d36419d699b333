//! The tables, and the migrations that create them.

use tokio_postgres::Client;

use super::conn::Target;
use crate::store::StoreError;

/// The schema, one migration per version: migration `i` takes the schema from
/// version `i` to `i + 1`. Append only; never edit a released migration.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema. `executions`, `journal` and `commands` are the hot
    // tables: rows leave them when their execution ends.
    "CREATE TABLE executions (
        id         uuid PRIMARY KEY,
        workflow   text NOT NULL,
        created_at timestamptz NOT NULL,
        start_at   timestamptz,
        started    boolean NOT NULL,
        record     text NOT NULL,
        holder     uuid,
        claims     integer NOT NULL DEFAULT 0
    );
    CREATE INDEX executions_unheld ON executions (workflow, created_at, id) WHERE holder IS NULL;
    CREATE INDEX executions_by_holder ON executions (holder) WHERE holder IS NOT NULL;
    CREATE TABLE journal (
        execution  uuid NOT NULL,
        seq        bigint NOT NULL,
        event      text NOT NULL,
        PRIMARY KEY (execution, seq)
    );
    CREATE TABLE history (
        id         uuid PRIMARY KEY,
        workflow   text NOT NULL,
        started_at timestamptz NOT NULL,
        state      text NOT NULL
    );
    CREATE INDEX history_by_start ON history (started_at, id);
    CREATE INDEX history_by_workflow ON history (workflow, started_at, id);
    CREATE TABLE dead_letters (
        id         uuid PRIMARY KEY,
        workflow   text NOT NULL,
        failed_at  timestamptz NOT NULL,
        expires_at timestamptz NOT NULL,
        record     text NOT NULL
    );
    CREATE INDEX dead_letters_by_expiry ON dead_letters (expires_at);
    CREATE SEQUENCE definition_registrations;
    CREATE TABLE definitions (
        name       text NOT NULL,
        version    text NOT NULL,
        registered bigint NOT NULL,
        snapshot   text NOT NULL,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE schedule_ticks (
        key        text PRIMARY KEY,
        fire_time  timestamptz NOT NULL
    );
    CREATE TABLE nodes (
        id         uuid PRIMARY KEY,
        started_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL
    );
    CREATE TABLE commands (
        id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        execution  uuid NOT NULL,
        command    text NOT NULL
    );
    CREATE INDEX commands_by_execution ON commands (execution);",
    // 2: a queued command's outcome, written by the holder in the transaction
    // that journals its effect and read by the node that sent it; executions
    // that their holder let go of while they wait (`parked`, until `wake_at` or a
    // command).
    "ALTER TABLE commands ADD COLUMN state text NOT NULL DEFAULT 'queued';
    ALTER TABLE commands ADD COLUMN error text;
    ALTER TABLE commands ADD COLUMN queued_at timestamptz NOT NULL DEFAULT now();
    CREATE INDEX commands_queued ON commands (execution) WHERE state = 'queued';
    ALTER TABLE executions ADD COLUMN parked boolean NOT NULL DEFAULT false;
    ALTER TABLE executions ADD COLUMN wake_at timestamptz;
    CREATE INDEX executions_parked ON executions (wake_at) WHERE holder IS NULL AND parked;",
    // 3: when each ended execution ended, for pruning by retention.
    "ALTER TABLE history ADD COLUMN ended_at timestamptz;
    UPDATE history SET ended_at = COALESCE((state::jsonb ->> 'ended_at')::timestamptz, started_at);
    ALTER TABLE history ALTER COLUMN ended_at SET NOT NULL;
    CREATE INDEX history_by_end ON history (workflow, ended_at);",
    // 4: unique keys: at most one live execution of a workflow per key.
    "ALTER TABLE executions ADD COLUMN unique_key text;
    CREATE UNIQUE INDEX executions_by_key ON executions (workflow, unique_key) WHERE unique_key IS NOT NULL;",
    // 5: priorities (claims take higher ones first), the slots of steps'
    // concurrency limits (queued or holding, per node, so that a dead node's
    // come back with its lease) and the recent starts of their rate limits.
    "ALTER TABLE executions ADD COLUMN priority integer NOT NULL DEFAULT 0;
    CREATE INDEX executions_claim_order ON executions (priority DESC, created_at, id) WHERE holder IS NULL;
    CREATE TABLE limit_slots (
        ticket   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        scope    text NOT NULL,
        key      text NOT NULL,
        priority integer NOT NULL,
        node     uuid NOT NULL,
        holding  boolean NOT NULL DEFAULT false
    );
    CREATE INDEX limit_slots_by_key ON limit_slots (scope, key);
    CREATE TABLE rate_windows (
        scope  text NOT NULL,
        key    text NOT NULL,
        starts timestamptz[] NOT NULL,
        PRIMARY KEY (scope, key)
    );",
    // 6: debounce keys: the delayed execution a debounced start waits under.
    "ALTER TABLE executions ADD COLUMN debounce_key text;
    CREATE INDEX executions_by_debounce_key ON executions (workflow, debounce_key) WHERE debounce_key IS NOT NULL;",
    // 7: the unique key an ended execution was started with, for starts that
    // keep a key held for a while after its execution ended.
    "ALTER TABLE history ADD COLUMN unique_key text;
    CREATE INDEX history_by_key ON history (workflow, unique_key, ended_at) WHERE unique_key IS NOT NULL;",
];

/// The schema version this build writes and reads.
const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Creates the schema or brings it to [`SCHEMA_VERSION`], under a transaction-level
/// advisory lock so that nodes starting together migrate once.
pub(super) async fn migrate(client: &mut Client, target: &Target) -> Result<(), StoreError> {
    let err = |e: tokio_postgres::Error| target.error(&e);
    let schema = &target.schema;
    let tx = client.transaction().await.map_err(err)?;
    tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&format!("sagaflow migrations {schema}")])
        .await
        .map_err(err)?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.sagaflow_schema (version integer NOT NULL);"
    ))
    .await
    .map_err(err)?;
    let row = tx.query_opt(&format!("SELECT version FROM {schema}.sagaflow_schema"), &[]).await.map_err(err)?;
    let found: i32 = match row {
        Some(r) => r.get(0),
        None => {
            tx.execute(&format!("INSERT INTO {schema}.sagaflow_schema (version) VALUES (0)"), &[])
                .await
                .map_err(err)?;
            0
        }
    };
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: format!("{} (schema {schema})", target.display),
            found: found.into(),
            supported: SCHEMA_VERSION.into(),
        });
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(&format!("SET LOCAL search_path TO {schema}; {migration}")).await.map_err(err)?;
        tx.execute(&format!("UPDATE {schema}.sagaflow_schema SET version = $1"), &[&(i as i32 + 1)])
            .await
            .map_err(err)?;
    }
    tx.commit().await.map_err(err)
}
