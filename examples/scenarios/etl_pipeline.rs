//! SPEC's "Data Pipeline with ETL": every night at 2 AM, extract yesterday's sales,
//! an inventory snapshot and the customer changes in parallel, transform and join
//! them, validate the result, load it into the warehouse, the search index and the
//! cache in parallel, then report and tell the data team. A failure pages the data
//! team (`alert_data_team`).
//!
//! The databases, the warehouse, Elasticsearch, the cache, Slack and PagerDuty are
//! simulations (see [`DataPlatform`]).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{Duration as Days, NaiveDate, Utc};
use sagaflow::prelude::*;
use serde::{Deserialize, Serialize};

use super::support::sim::{Faults, Ledger, latency};

/// Failures the simulated platform is told to produce.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PlatformFaults {
    /// This many sales rows come back without a customer (validation fails).
    pub(crate) orphan_sales: usize,
    /// The warehouse drops the connection on this many bulk inserts.
    pub(crate) warehouse_drops: u32,
}

/// One sale.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Sale {
    pub(crate) id: u32,
    pub(crate) sku: String,
    pub(crate) customer_id: Option<u32>,
    pub(crate) cents: u64,
}

/// One joined, cleaned record.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Record {
    pub(crate) sale_id: u32,
    pub(crate) sku: String,
    pub(crate) customer: Option<String>,
    pub(crate) stock_left: Option<i64>,
    pub(crate) cents: u64,
}

/// The simulated data platform: source databases, destinations, chat and paging.
#[derive(Debug)]
pub(crate) struct DataPlatform {
    /// What the services did.
    pub(crate) ledger: Arc<Ledger>,
    /// The failures to produce, per date.
    pub(crate) faults: Faults<PlatformFaults>,
}

const SKUS: [&str; 4] = ["mug-blue", "tea-sencha-100g", "kettle-steel", "cup-white"];

impl DataPlatform {
    /// A platform with these faults.
    pub(crate) fn new(faults: PlatformFaults) -> Arc<DataPlatform> {
        Arc::new(DataPlatform { ledger: Ledger::new(), faults: Faults::new(faults) })
    }

    async fn fetch_sales(&self, date: NaiveDate) -> Vec<Sale> {
        latency(700).await;
        let orphans = self.faults.of(&date.to_string()).orphan_sales;
        let sales: Vec<Sale> = (1..=48u32)
            .map(|id| Sale {
                id,
                sku: SKUS[id as usize % SKUS.len()].to_owned(),
                customer_id: (id as usize > orphans).then_some(100 + id % 12),
                cents: 500 + u64::from(id * 37 % 4_000),
            })
            .collect();
        self.ledger.record("sales_db", format!("read {} sales of {date}", sales.len()));
        sales
    }

    async fn fetch_inventory(&self, date: NaiveDate) -> HashMap<String, i64> {
        latency(450).await;
        let snapshot: HashMap<String, i64> =
            SKUS.iter().enumerate().map(|(i, s)| ((*s).to_owned(), 40 - 9 * i as i64)).collect();
        self.ledger.record("inventory_db", format!("read the snapshot of {date} ({} SKUs)", snapshot.len()));
        snapshot
    }

    async fn fetch_customers(&self, date: NaiveDate) -> HashMap<String, String> {
        latency(300).await;
        let changes: HashMap<String, String> =
            (100..112u32).map(|id| (id.to_string(), format!("customer-{id}@example.com"))).collect();
        self.ledger.record("customer_db", format!("read {} customer changes of {date}", changes.len()));
        changes
    }

    async fn bulk_insert(&self, date: NaiveDate, records: &[Record]) -> Result<(), StepError> {
        latency(650).await;
        let dropped = self.faults.with(&date.to_string(), |f| {
            let drop = f.warehouse_drops > 0;
            f.warehouse_drops = f.warehouse_drops.saturating_sub(1);
            drop
        });
        if dropped {
            return Err(StepError::new("connection_error", "the warehouse closed the connection mid-batch"));
        }
        self.ledger.record("warehouse", format!("inserted {} rows", records.len()));
        Ok(())
    }

    async fn bulk_index(&self, records: &[Record]) {
        latency(400).await;
        self.ledger.record("elasticsearch", format!("indexed {} documents", records.len()));
    }

    async fn refresh_cache(&self, date: NaiveDate, records: &[Record]) {
        latency(150).await;
        let revenue: u64 = records.iter().map(|r| r.cents).sum();
        self.ledger.record("cache", format!("daily aggregates of {date}: {} sales, {} cents", records.len(), revenue));
    }

    async fn daily_summary(&self, date: NaiveDate, count: usize) -> String {
        latency(250).await;
        let url = format!("https://reports.example.com/daily/{date}");
        self.ledger.record("reports", format!("generated {url} ({count} records)"));
        url
    }

    async fn slack(&self, channel: &str, text: &str) {
        latency(120).await;
        self.ledger.record("slack", format!("{channel}: {}", text.replace('\n', " | ")));
    }

    async fn page(&self, team: &str, text: &str) {
        latency(90).await;
        self.ledger.record("pagerduty", format!("paged {team}: {text}"));
    }
}

/// Joins the three extracts into records.
fn transform_and_join(
    sales: &[Sale],
    inventory: &HashMap<String, i64>,
    customers: &HashMap<String, String>,
) -> Vec<Record> {
    sales
        .iter()
        .map(|s| Record {
            sale_id: s.id,
            sku: s.sku.clone(),
            customer: s.customer_id.and_then(|c| customers.get(&c.to_string()).cloned()),
            stock_left: inventory.get(&s.sku).copied(),
            cents: s.cents,
        })
        .collect()
}

/// Problems that make the records unfit to load.
fn validate(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| match (&r.customer, r.stock_left) {
            (None, _) => Some(format!("sale {} has no customer", r.sale_id)),
            (_, None) => Some(format!("sale {} has an unknown SKU `{}`", r.sale_id, r.sku)),
            _ => None,
        })
        .collect()
}

/// The workflow, bound to its platform.
#[derive(Debug)]
pub(crate) struct DailyDataPipeline {
    /// The services the steps call.
    pub(crate) platform: Arc<DataPlatform>,
}

#[workflow(
    name = "daily_data_pipeline",
    timeout = "2h",
    schedule(cron = "0 2 * * *"),
    on_failure = alert_data_team,
    tags = ["etl", "daily"]
)]
impl DailyDataPipeline {
    // Extract: fetch data from multiple sources.
    #[step]
    fn prepare(ctx: &Context) -> StepResult {
        let date: NaiveDate = match ctx.get_opt::<NaiveDate>("date")? {
            Some(date) => date,
            None => Utc::now().date_naive() - Days::days(1),
        };
        Ok(json!({ "date": date, "started_at": Utc::now() }).into())
    }

    #[step(after = prepare, group = extract, timeout = "30m")]
    async fn extract_sales(&self, ctx: &Context) -> StepResult {
        let data = self.platform.fetch_sales(ctx.get("date")?).await;
        Ok(json!({ "sales_count": data.len(), "sales_data": data }).into())
    }

    #[step(after = prepare, group = extract, timeout = "30m")]
    async fn extract_inventory(&self, ctx: &Context) -> StepResult {
        let data = self.platform.fetch_inventory(ctx.get("date")?).await;
        Ok(json!({ "inventory_data": data }).into())
    }

    #[step(after = prepare, group = extract, timeout = "15m")]
    async fn extract_customers(&self, ctx: &Context) -> StepResult {
        let data = self.platform.fetch_customers(ctx.get("date")?).await;
        Ok(json!({ "customer_data": data }).into())
    }

    // Transform: clean and normalize data.
    #[step(after_group = extract, timeout = "45m")]
    async fn transform_and_join(&self, ctx: &Context) -> StepResult {
        latency(350).await;
        let transformed = transform_and_join(
            &ctx.get::<Vec<Sale>>("sales_data")?,
            &ctx.get("inventory_data")?,
            &ctx.get("customer_data")?,
        );
        Ok(json!({ "record_count": transformed.len(), "transformed_data": transformed }).into())
    }

    #[step(after = transform_and_join)]
    async fn validate_data(&self, ctx: &Context) -> StepResult {
        latency(120).await;
        let records: Vec<Record> = ctx.get("transformed_data")?;
        let errors = validate(&records);
        if !errors.is_empty() {
            return Err(StepError::new("validation_failed", format!("{} records are invalid", errors.len()))
                .with_details(json!({ "errors": errors }))
                .permanent());
        }
        Ok(json!({ "validated_data": records }).into())
    }

    // Load: write to destinations.
    #[step(after = validate_data, group = load, timeout = "30m", retry_delay = "500ms")]
    async fn load_to_warehouse(&self, ctx: &Context) -> StepResult {
        self.platform.bulk_insert(ctx.get("date")?, &ctx.get::<Vec<Record>>("validated_data")?).await?;
        Ok(json!({ "warehouse_loaded": true }).into())
    }

    #[step(after = validate_data, group = load, timeout = "15m")]
    async fn load_to_elasticsearch(&self, ctx: &Context) -> StepResult {
        self.platform.bulk_index(&ctx.get::<Vec<Record>>("validated_data")?).await;
        Ok(json!({ "elasticsearch_loaded": true }).into())
    }

    #[step(after = validate_data, group = load, timeout = "10m")]
    async fn update_cache(&self, ctx: &Context) -> StepResult {
        self.platform.refresh_cache(ctx.get("date")?, &ctx.get::<Vec<Record>>("validated_data")?).await;
        Ok(json!({ "cache_updated": true }).into())
    }

    // Finalize.
    #[step(after_group = load)]
    async fn generate_report(&self, ctx: &Context) -> StepResult {
        let url = self.platform.daily_summary(ctx.get("date")?, ctx.get("record_count")?).await;
        Ok(json!({ "report_url": url }).into())
    }

    #[step(after = generate_report)]
    async fn send_notifications(&self, ctx: &Context) -> StepResult {
        let started: chrono::DateTime<Utc> = ctx.get("started_at")?;
        let minutes = (Utc::now() - started).num_minutes();
        let text = format!(
            "✅ Daily ETL Complete\nDate: {}\nRecords: {}\nDuration: {minutes} minutes\nReport: {}",
            ctx.get::<NaiveDate>("date")?,
            ctx.get::<usize>("record_count")?,
            ctx.get::<String>("report_url")?
        );
        self.platform.slack("#data-team", &text).await;
        Ok(Outcome::Done)
    }

    async fn alert_data_team(&self, ctx: &Context) -> StepResult {
        let error: StepError = ctx.get("__error__")?;
        self.platform.page("data_team", &format!("Daily ETL failed: {error}")).await;
        Ok(Outcome::Done)
    }
}
