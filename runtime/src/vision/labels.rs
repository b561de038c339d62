//! Class labels: from a label file or from the model's packed metadata.

use crate::error::{Error, Result};
use crate::model::Model;
use std::collections::BTreeMap;
use std::path::Path;

/// Class id -> label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    map: BTreeMap<usize, String>,
}

impl Labels {
    /// Parses a label file like pycoral's `read_label_file`: a line `N label` (or `N: label`)
    /// whose first word is a number gives class `N`; any other line gives the class of its line
    /// number (0-based). Blank lines keep their number but give no label.
    pub fn parse(text: &str) -> Labels {
        let mut map = BTreeMap::new();
        for (row, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let split = line.find(|c: char| c == ':' || c.is_whitespace());
            if let Some(at) = split {
                let (head, rest) = line.split_at(at);
                let rest = rest.trim_start_matches(|c: char| c == ':' || c.is_whitespace());
                if !head.is_empty() && head.bytes().all(|b| b.is_ascii_digit()) && !rest.is_empty() {
                    if let Ok(id) = head.parse::<usize>() {
                        map.insert(id, rest.trim().to_string());
                        continue;
                    }
                }
            }
            map.insert(row, line.to_string());
        }
        Labels { map }
    }

    /// Reads and parses a label file (see [`Labels::parse`]).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Labels> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        let labels = Labels::parse(&String::from_utf8_lossy(&bytes));
        if labels.is_empty() {
            return Err(Error::argument(format!("{}: the label file has no labels", path.display())));
        }
        Ok(labels)
    }

    /// The labels packed into the model's metadata (one per line, class = line number), if any.
    pub fn from_model(model: &Model) -> Result<Option<Labels>> {
        Ok(model.labels()?.map(|lines| Labels::from_lines(lines.iter().map(String::as_str))))
    }

    /// Labels from a list: class `i` is item `i` (empty items give no label).
    pub fn from_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Labels {
        let map = lines
            .into_iter()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| (i, l.trim().to_string()))
            .collect();
        Labels { map }
    }

    /// The label of class `id`.
    pub fn get(&self, id: usize) -> Option<&str> {
        self.map.get(&id).map(String::as_str)
    }

    /// Number of labelled classes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// (class id, label) pairs in class order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &str)> {
        self.map.iter().map(|(&k, v)| (k, v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_formats() {
        let l = Labels::parse("background\ntench, Tinca tinca\n\ngoldfish\n");
        assert_eq!(l.get(0), Some("background"));
        assert_eq!(l.get(1), Some("tench, Tinca tinca"));
        assert_eq!(l.get(2), None);
        assert_eq!(l.get(3), Some("goldfish"));
        let l = Labels::parse("0  person\n1 bicycle\n2: car\r\n 12 stop sign\n");
        assert_eq!(l.get(0), Some("person"));
        assert_eq!(l.get(2), Some("car"));
        assert_eq!(l.get(12), Some("stop sign"));
        assert_eq!(l.len(), 4);
        // A number alone is a label, not an index.
        let l = Labels::parse("7\n");
        assert_eq!(l.get(0), Some("7"));
        let l = Labels::from_lines(["a", "", "c"]);
        assert_eq!((l.get(0), l.get(1), l.get(2)), (Some("a"), None, Some("c")));
    }
}
