//! `vigil incident replay SIGNALS.jsonl`: detection and correlation on recorded signals with a
//! virtual clock; prints the incidents and pages they would have produced.

use std::io::BufRead;
use std::path::Path;

use anyhow::Context;
use vigil_incident::rules::Rules;

/// Replay `signals` (a path, or `-` for stdin) through `rules` (a directory, or the built-ins).
pub fn replay(signals: &Path, rules: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let rules = match rules {
        Some(dir) => Rules::load_dir(dir).with_context(|| format!("rules {}", dir.display()))?,
        None => Rules::builtin(),
    };
    let reader: Box<dyn BufRead> = if signals == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(signals)
            .with_context(|| format!("{}: cannot open", signals.display()))?;
        Box::new(std::io::BufReader::new(f))
    };
    let report = vigil_incident::replay::replay(reader, &rules)?;
    if json {
        let out = serde_json::json!({
            "signals": report.signals,
            "duplicates": report.duplicates,
            "invalid": report.invalid,
            "incidents": report.incidents,
            "pages": report.pages,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{report}");
    }
    Ok(())
}
