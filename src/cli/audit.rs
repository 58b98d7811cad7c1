//! `portal-invites audit`: a shop's audit trail as JSON lines, oldest first, read a page at a time so
//! a shop with a long trail is never loaded at once. It only reads: it applies no migration, and
//! says so when the database needs `portal-invites migrate` first.

use std::{
    io::{self, Write},
    process::ExitCode,
    str::FromStr,
};

use chrono::{DateTime, NaiveDate, Utc};
use clap::Args;
use sea_orm::sqlx::sqlite::SqliteConnectOptions;

use crate::{
    audit::{self, Entry, Query},
    config::{DatabaseUrl, Settings},
    db::Database,
    domain::{CustomerId, ShopId},
};

/// Events read per query.
const PAGE: u64 = 500;

/// Options of `audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The host's id of the shop.
    #[arg(long, value_name = "ID", value_parser = shop_id)]
    pub shop: ShopId,
    /// Only this customer's events (the host's customer id).
    #[arg(long, value_name = "ID", value_parser = customer_id)]
    pub customer: Option<CustomerId>,
    /// Only events at or after this moment: a date (2026-12-01, from midnight UTC) or an RFC 3339
    /// time (2026-12-01T09:30:00Z, 2026-12-01T19:30:00+10:00).
    #[arg(long, value_name = "DATE|TIME", value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
}

fn shop_id(text: &str) -> Result<ShopId, String> {
    ShopId::parse(text).map_err(|e| e.to_string())
}

fn customer_id(text: &str) -> Result<CustomerId, String> {
    CustomerId::parse(text).map_err(|e| e.to_string())
}

/// A date (midnight UTC) or an RFC 3339 time, as `--since` takes it.
pub fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    DateTime::parse_from_rfc3339(text).map(|t| t.to_utc()).map_err(|_| {
        "expected a date such as 2026-12-01 (midnight UTC) or an RFC 3339 time such as \
         2026-12-01T09:30:00Z or 2026-12-01T19:30:00+10:00"
            .to_owned()
    })
}

/// Prints the events; the exit code says how it went.
pub async fn run(settings: Settings, args: AuditArgs) -> ExitCode {
    let url = settings.database_url;
    if sqlite_file_missing(&url) {
        // Opening it would create an empty one.
        eprintln!("error: there is no database at {url}; check PORTAL_DATABASE_URL");
        return ExitCode::FAILURE;
    }
    let db = match Database::connect(&url).await {
        Ok(db) => db,
        Err(e) => {
            eprintln!("error: cannot open the database at {url}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match db.migration_status().await {
        Ok(list) if list.iter().all(|(_, applied)| *applied) => print_trail(&db, &args).await,
        Ok(_) => {
            eprintln!(
                "error: the database at {url} has migrations that are not applied; run `portal-invites migrate` first"
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: reading the migration status of {url} failed: {e}");
            ExitCode::FAILURE
        }
    };
    let _ = db.close().await;
    code
}

fn sqlite_file_missing(url: &DatabaseUrl) -> bool {
    url.is_sqlite()
        && SqliteConnectOptions::from_str(url.expose()).is_ok_and(|options| !options.get_filename().exists())
}

async fn print_trail(db: &Database, args: &AuditArgs) -> ExitCode {
    let query = Query {
        shop_id: args.shop.as_str().to_owned(),
        customer_id: args.customer.as_ref().map(|c| c.as_str().to_owned()),
        since: args.since,
    };
    let mut after = None;
    loop {
        let page = match audit::page(db.conn(), &query, after, PAGE).await {
            Ok(page) => page,
            Err(e) => {
                eprintln!("error: reading the audit trail failed: {e}");
                return ExitCode::FAILURE;
            }
        };
        match print_lines(&page.entries) {
            Ok(()) => {}
            // The reader stopped reading (`| head`): what it wanted was printed.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: writing the audit trail failed: {e}");
                return ExitCode::FAILURE;
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return ExitCode::SUCCESS,
        }
    }
}

fn print_lines(entries: &[Entry]) -> io::Result<()> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    for entry in entries {
        serde_json::to_writer(&mut out, entry)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_date_at_midnight_utc_or_an_rfc_3339_time() {
        let utc = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        assert_eq!(parse_since("2026-12-01"), Ok(utc("2026-12-01T00:00:00Z")));
        assert_eq!(parse_since(" 2026-12-01 "), Ok(utc("2026-12-01T00:00:00Z")));
        assert_eq!(parse_since("2026-12-01T19:30:00+10:00"), Ok(utc("2026-12-01T09:30:00Z")));
        assert_eq!(parse_since("2026-12-01T09:30:00.250Z"), Ok(utc("2026-12-01T09:30:00.250Z")));
        for bad in
            ["", "yesterday", "2026-13-01", "2026-02-30", "01/12/2026", "2026-12-01 09:30", "1764547200"]
        {
            let err = parse_since(bad).unwrap_err();
            assert!(err.contains("2026-12-01") && err.contains("RFC 3339"), "{bad}: {err}");
        }
    }
}
