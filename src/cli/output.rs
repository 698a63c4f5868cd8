//! How the command line prints rows: an aligned table for people (floats
//! rounded), or one JSON object a line (`--json`, exact values) or CSV
//! (`--csv`) for scripts; and a progress bar on stderr, driven by an
//! analysis's progress events, shown only when stderr is a terminal.

use std::io::{self, Write};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::service::pb;

/// One value of a row.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Text(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Empty,
}

impl From<&str> for Cell {
    fn from(s: &str) -> Cell {
        Cell::Text(s.to_string())
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Cell {
        Cell::Text(s)
    }
}

impl From<f64> for Cell {
    fn from(x: f64) -> Cell {
        Cell::Float(x)
    }
}

impl From<u64> for Cell {
    fn from(x: u64) -> Cell {
        Cell::Integer(x as i64)
    }
}

impl From<u32> for Cell {
    fn from(x: u32) -> Cell {
        Cell::Integer(x as i64)
    }
}

impl From<i32> for Cell {
    fn from(x: i32) -> Cell {
        Cell::Integer(x as i64)
    }
}

impl From<bool> for Cell {
    fn from(b: bool) -> Cell {
        Cell::Boolean(b)
    }
}

impl<T: Into<Cell>> From<Option<T>> for Cell {
    fn from(x: Option<T>) -> Cell {
        x.map_or(Cell::Empty, Into::into)
    }
}

impl Cell {
    /// A list, `;`-separated as the CSV format writes lists.
    pub fn list<S: AsRef<str>>(items: &[S]) -> Cell {
        Cell::Text(items.iter().map(|s| s.as_ref()).collect::<Vec<_>>().join(";"))
    }

    /// As a table shows it: floats to four significant places.
    fn rounded(&self) -> String {
        match self {
            Cell::Float(x) => round(*x),
            other => other.exact(),
        }
    }

    /// As CSV writes it: every digit.
    fn exact(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Integer(i) => i.to_string(),
            Cell::Float(x) => x.to_string(),
            Cell::Boolean(b) => b.to_string(),
            Cell::Empty => String::new(),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Cell::Text(s) => serde_json::Value::from(s.as_str()),
            Cell::Integer(i) => serde_json::Value::from(*i),
            Cell::Float(x) => {
                serde_json::Number::from_f64(*x).map_or(serde_json::Value::Null, serde_json::Value::Number)
            }
            Cell::Boolean(b) => serde_json::Value::from(*b),
            Cell::Empty => serde_json::Value::Null,
        }
    }

    fn numeric(&self) -> bool {
        matches!(self, Cell::Integer(_) | Cell::Float(_))
    }
}

/// A float for a person: four significant digits, no trailing zeros, and
/// scientific notation for the very small (a PageRank of 3e-7).
pub fn round(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return x.to_string();
    }
    if x.abs() < 1e-3 {
        return format!("{x:.3e}");
    }
    let decimals = (3 - x.abs().log10().floor() as i32).clamp(0, 4) as usize;
    let text = format!("{x:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// What the command line makes of a failed write to stdout: a reader that
/// went away (`| head`) ends the command quietly, as Unix tools do.
pub fn written(error: io::Error) -> Result<(), String> {
    if error.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    Err(format!("error: cannot write: {error}"))
}

/// A row: named values in column order.
pub type Record = Vec<(&'static str, Cell)>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Table,
    Json,
    Csv,
}

#[derive(Args, Clone, Copy, Debug, Default)]
pub struct OutputArgs {
    /// One JSON object a line, with exact values.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// CSV with a header row, with exact values.
    #[arg(long)]
    pub csv: bool,
}

impl OutputArgs {
    pub fn style(self) -> Style {
        if self.json {
            Style::Json
        } else if self.csv {
            Style::Csv
        } else {
            Style::Table
        }
    }
}

/// Prints rows as they come (JSON, CSV) or all at once, aligned (table).
pub struct Printer {
    style: Style,
    rows: Vec<Record>,
    header_written: bool,
    out: Box<dyn Write>,
}

impl Printer {
    pub fn new(style: Style) -> Printer {
        Printer::to(style, Box::new(io::stdout()))
    }

    pub fn to(style: Style, out: Box<dyn Write>) -> Printer {
        Printer {
            style,
            rows: Vec::new(),
            header_written: false,
            out,
        }
    }

    pub fn row(&mut self, record: Record) -> io::Result<()> {
        match self.style {
            Style::Table => self.rows.push(record),
            Style::Json => {
                let object: serde_json::Map<String, serde_json::Value> = record
                    .iter()
                    .map(|(name, cell)| (name.to_string(), cell.json()))
                    .collect();
                writeln!(self.out, "{}", serde_json::Value::Object(object))?;
            }
            Style::Csv => {
                let mut writer = csv::WriterBuilder::new().from_writer(Vec::new());
                if !self.header_written {
                    writer.write_record(record.iter().map(|(name, _)| *name))?;
                    self.header_written = true;
                }
                writer.write_record(record.iter().map(|(_, cell)| cell.exact()))?;
                let bytes = writer.into_inner().map_err(|e| io::Error::other(e.to_string()))?;
                self.out.write_all(&bytes)?;
            }
        }
        Ok(())
    }

    /// Writes the table (other styles are already out) and flushes.
    pub fn finish(mut self) -> io::Result<()> {
        if self.style == Style::Table {
            if self.rows.is_empty() {
                writeln!(self.out, "(no rows)")?;
            } else {
                self.table()?;
            }
        }
        self.out.flush()
    }

    fn table(&mut self) -> io::Result<()> {
        let names: Vec<&str> = self.rows[0].iter().map(|(name, _)| *name).collect();
        let texts: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(|(_, c)| c.rounded()).collect())
            .collect();
        let mut widths: Vec<usize> = names.iter().map(|n| n.chars().count()).collect();
        for row in &texts {
            for (w, text) in widths.iter_mut().zip(row) {
                *w = (*w).max(text.chars().count());
            }
        }
        // Numbers right-aligned, text left-aligned, as a spreadsheet shows them.
        let numeric: Vec<bool> = (0..names.len())
            .map(|i| {
                self.rows
                    .iter()
                    .all(|r| r.get(i).is_none_or(|(_, c)| c.numeric() || *c == Cell::Empty))
            })
            .collect();
        let line = |cells: Vec<String>| -> String {
            let parts: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    let pad = widths[i].saturating_sub(text.chars().count());
                    if numeric[i] {
                        format!("{}{text}", " ".repeat(pad))
                    } else {
                        format!("{text}{}", " ".repeat(pad))
                    }
                })
                .collect();
            parts.join("  ").trim_end().to_string()
        };
        writeln!(self.out, "{}", line(names.iter().map(|n| n.to_uppercase()).collect()))?;
        for row in texts {
            writeln!(self.out, "{}", line(row))?;
        }
        Ok(())
    }
}

/// A progress bar on stderr for a long call, hidden unless stderr is a
/// terminal (so logs and pipes stay clean).
pub struct Progress(ProgressBar);

impl Progress {
    pub fn new() -> Progress {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {bar:30} {pos}/{len} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Progress(bar)
    }

    pub fn update(&self, progress: &pb::Progress) {
        self.0.set_message(progress.phase.clone());
        self.0.set_length(progress.total);
        self.0.set_position(progress.done);
    }

    pub fn done(&self) {
        self.0.finish_and_clear();
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_round_floats_and_align_columns() {
        assert_eq!(round(0.9999999999999999), "1");
        assert_eq!(round(0.123456), "0.1235");
        assert_eq!(round(12.5), "12.5");
        assert_eq!(round(123456.7), "123457");
        assert_eq!(round(0.0000003141), "3.141e-7");
        let shared = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut printer = Printer::to(Style::Table, Box::new(Sink(shared.clone())));
        printer
            .row(vec![("id", "faw".into()), ("value", 0.9999999999999999.into())])
            .unwrap();
        printer
            .row(vec![("id", "ks-firm-10".into()), ("value", 12.25.into())])
            .unwrap();
        printer.finish().unwrap();
        let text = String::from_utf8(shared.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "ID          VALUE\nfaw             1\nks-firm-10  12.25\n");
    }
}
