//! The printed table: one row per figure, one column per store.

pub struct Table {
    title: String,
    columns: Vec<String>,
    rows: Vec<(String, Vec<String>)>,
}

impl Table {
    pub fn new(title: impl Into<String>, columns: &[&str]) -> Self {
        Table {
            title: title.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, label: impl Into<String>, cells: Vec<String>) {
        let label = label.into();
        eprintln!("  measured: {label}: {}", cells.join(" | "));
        self.rows.push((label, cells));
    }

    pub fn render(&self) -> String {
        let lw = self
            .rows
            .iter()
            .map(|r| r.0.len())
            .max()
            .unwrap_or(0)
            .max(6);
        let cw: Vec<usize> = (0..self.columns.len())
            .map(|i| {
                self.rows
                    .iter()
                    .filter_map(|r| r.1.get(i).map(String::len))
                    .chain([self.columns[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = format!("{}\n", self.title);
        let line = |label: &str, cells: &[String]| {
            let mut l = format!("| {label:<lw$} |");
            for (c, w) in cells.iter().zip(&cw) {
                l.push_str(&format!(" {c:>w$} |"));
            }
            l + "\n"
        };
        out.push_str(&line("", &self.columns));
        let mut sep = format!("|{}|", "-".repeat(lw + 2));
        for w in &cw {
            sep.push_str(&format!("{}:|", "-".repeat(w + 1)));
        }
        out.push_str(&sep);
        out.push('\n');
        for (label, cells) in &self.rows {
            out.push_str(&line(label, cells));
        }
        out
    }
}

pub fn rate(x: f64) -> String {
    format!("{x:.0}")
}

pub fn ms(x: f64) -> String {
    format!("{x:.2}")
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// minik's figure over etcd's, for throughput rows.
pub fn ratio(minik: f64, etcd: f64) -> String {
    if etcd > 0.0 {
        format!("{:.2}x", minik / etcd)
    } else {
        "-".into()
    }
}

/// "p50 / p99" of a histogram in milliseconds; `per_ms` is how many recorded units make 1 ms.
pub fn p50_p99_ms(h: &hdrhistogram::Histogram<u64>, per_ms: f64) -> String {
    format!(
        "{} / {}",
        ms(h.value_at_quantile(0.5) as f64 / per_ms),
        ms(h.value_at_quantile(0.99) as f64 / per_ms)
    )
}
