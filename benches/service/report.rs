//! `BENCHMARKS.md`: one table per database, each row beside the ceiling of the same run. Only the
//! section between this database's markers is rewritten; the rest of the file (the analysis) stays.

use std::{fmt::Write as _, path::Path};

use super::load::Stats;

/// One row of the table.
pub struct Row {
    /// Scenario name.
    pub name: String,
    /// Workers.
    pub concurrency: usize,
    /// Successful operations per second.
    pub throughput: f64,
    /// What an operation is.
    pub unit: &'static str,
    /// Latency percentiles and maximum, in milliseconds.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
    /// Failed operations.
    pub errors: u64,
    /// Operations turned away with 503 on purpose.
    pub shed: u64,
    /// The service's peak RSS during the scenario, MiB.
    pub rss_mib: f64,
    /// CPU seconds per 1,000 operations: the service's, and PostgreSQL's (zero on SQLite).
    pub cpu_per_1k: Option<(f64, f64)>,
    /// The target, in words.
    pub target: String,
    /// Whether it was met.
    pub met: Option<bool>,
}

impl Row {
    /// A row from a run's statistics.
    pub fn new(name: &str, concurrency: usize, unit: &'static str, stats: &Stats, rss_kib: u64) -> Self {
        let ms = |q: f64| stats.latency.value_at_quantile(q) as f64 / 1000.0;
        Self {
            name: name.to_owned(),
            concurrency,
            throughput: stats.throughput(),
            unit,
            p50: ms(0.5),
            p99: ms(0.99),
            max: stats.latency.max() as f64 / 1000.0,
            errors: stats.failed,
            shed: stats.shed,
            rss_mib: rss_kib as f64 / 1024.0,
            cpu_per_1k: stats.cpu.map(|cpu| {
                let per_1k = |seconds: f64| seconds / stats.ok.max(1) as f64 * 1000.0;
                (per_1k(cpu.service), per_1k(cpu.database))
            }),
            target: String::new(),
            met: None,
        }
    }

    /// Sets the target and whether it was met.
    pub fn target(mut self, text: impl Into<String>, met: bool) -> Self {
        self.target = text.into();
        self.met = Some(met);
        self
    }
}

/// Everything one run measured.
pub struct Report {
    /// `SQLite` or `PostgreSQL`.
    pub database: String,
    /// Date (UTC).
    pub date: String,
    /// Cores.
    pub cores: usize,
    /// CPU model.
    pub cpu: String,
    /// Warm-up and measured seconds.
    pub warmup: u64,
    /// Measured seconds.
    pub duration: u64,
    /// Ceiling throughput, requests per second.
    pub ceiling: f64,
    /// The rows.
    pub rows: Vec<Row>,
    /// Further findings, one line each.
    pub notes: Vec<String>,
}

impl Report {
    /// The markdown section.
    pub fn section(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "## {}\n", self.database);
        let _ = writeln!(
            out,
            "Measured {} on {} cores ({}); each scenario runs {} s after a {} s warm-up, load generator on the \
             same machine. Latencies from an HDR histogram, per operation.\n",
            self.date, self.cores, self.cpu, self.duration, self.warmup
        );
        let postgres = self.rows.iter().any(|r| r.cpu_per_1k.is_some_and(|(_, db)| db > 0.0));
        let cpu_heading =
            if postgres { "CPU s per 1,000: service + PostgreSQL" } else { "service CPU s per 1,000" };
        let _ = writeln!(
            out,
            "| scenario | workers | throughput | vs ceiling | p50 | p99 | max | errors | 503s | {cpu_heading} | peak RSS | target | met |"
        );
        out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n");
        for row in &self.rows {
            let ratio = if self.ceiling > 0.0 {
                format!("{:.0} %", row.throughput / self.ceiling * 100.0)
            } else {
                "—".into()
            };
            let met = match row.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "—",
            };
            let cpu = match row.cpu_per_1k {
                Some((service, database)) if postgres => format!("{service:.3} + {database:.3}"),
                Some((service, _)) => format!("{service:.3}"),
                None => "—".into(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {} | {} | {} | {:.0} MiB | {} | {} |",
                row.name,
                row.concurrency,
                row.throughput,
                row.unit,
                ratio,
                row.p50,
                row.p99,
                row.max,
                row.errors,
                row.shed,
                cpu,
                row.rss_mib,
                if row.target.is_empty() { "—" } else { &row.target },
                met
            );
        }
        out.push('\n');
        for note in &self.notes {
            let _ = writeln!(out, "- {note}");
        }
        out
    }

    /// Writes (or replaces) this database's section of `path`.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let key = self.database.to_lowercase();
        let (start, end) = (format!("<!-- bench:{key}:start -->"), format!("<!-- bench:{key}:end -->"));
        let block = format!("{start}\n{}{end}", self.section());
        let existing = std::fs::read_to_string(path).unwrap_or_else(|_| {
            "# Benchmarks\n\nWritten by `cargo bench --bench service` (SQLite) and `cargo bench --bench service -- \
             --database postgres://…` (PostgreSQL); see the README.\n"
                .to_owned()
        });
        let updated = match (existing.find(&start), existing.find(&end)) {
            (Some(a), Some(b)) if a < b => format!("{}{block}{}", &existing[..a], &existing[b + end.len()..]),
            _ => format!("{}\n{block}\n", existing.trim_end()),
        };
        std::fs::write(path, updated)
    }
}
