//! A parser of the Prometheus text exposition format (and OpenMetrics text), enough to read
//! the samples of a `/metrics` answer exactly.

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Clone, Debug, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// Parses every sample line; comments (`# HELP`, `# TYPE`, `# EOF`) are skipped.
    pub fn parse(text: &str) -> Result<Self, String> {
        let samples = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| parse_sample(line).map_err(|error| format!("{error} in {line:?}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { samples })
    }

    /// The samples named `name` that carry every one of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |sample| {
            sample.name == name
                && labels
                    .iter()
                    .all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(value))
        })
    }

    /// The sum of the samples named `name` that carry every one of `labels` (0 when none does,
    /// as for a labelled counter not yet incremented).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|sample| sample.value).sum()
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("no metric name".to_owned());
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = parse_labels(after_brace, &mut labels)?;
    }
    let value = rest
        .split_whitespace()
        .next()
        .ok_or("no value")
        .and_then(|value| parse_value(value).ok_or("value is not a number"))?;
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `key="value",...}` and returns what follows the closing brace.
fn parse_labels<'a>(
    mut rest: &'a str,
    labels: &mut BTreeMap<String, String>,
) -> Result<&'a str, String> {
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let (key, after_key) = rest.split_once('=').ok_or("label without '='")?;
        let mut chars = after_key
            .strip_prefix('"')
            .ok_or("label value not quoted")?
            .char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next() {
                None => return Err("label value not closed".to_owned()),
                Some((index, '"')) => break index,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, escaped)) => value.push(escaped),
                    None => return Err("label value not closed".to_owned()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.insert(key.trim().to_owned(), value);
        rest = &after_key[1 + end + 1..];
    }
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP gw_chunks_rejected Pieces not stored.\n\
# TYPE gw_chunks_rejected counter\n\
gw_chunks_rejected_total{reason=\"offset_mismatch\"} 2\n\
gw_chunks_rejected_total{reason=\"upload_locked\"} 1\n\
gw_bytes_total 1234\n\
gw_speed_bucket{le=\"+Inf\",path=\"a \\\"quoted\\\" \\\\ one\"} 3 1700000000\n\
gw_route_total{route=\"/v1/uploads/{id}\",status=\"204\"} 5.0\n\
# EOF\n";

    #[test]
    fn samples_are_read_with_their_labels() {
        let exposition = Exposition::parse(TEXT).expect("parses");
        assert_eq!(exposition.samples.len(), 5);
        assert_eq!(exposition.sum("gw_bytes_total", &[]), 1234.0);
        assert_eq!(exposition.sum("gw_chunks_rejected_total", &[]), 3.0);
        assert_eq!(
            exposition.sum("gw_chunks_rejected_total", &[("reason", "upload_locked")]),
            1.0
        );
        assert_eq!(exposition.sum("gw_missing_total", &[]), 0.0);
        let bucket = exposition
            .matching("gw_speed_bucket", &[("le", "+Inf")])
            .next()
            .expect("bucket");
        assert_eq!(bucket.labels["path"], "a \"quoted\" \\ one");
        assert_eq!(bucket.value, 3.0);
        assert_eq!(
            exposition.sum("gw_route_total", &[("route", "/v1/uploads/{id}")]),
            5.0
        );
    }

    #[test]
    fn a_malformed_line_is_an_error() {
        assert!(Exposition::parse("metric{a=\"b\" 1\n").is_err());
        assert!(Exposition::parse("metric{a=b} 1\n").is_err());
        assert!(Exposition::parse("metric one\n").is_err());
    }
}
