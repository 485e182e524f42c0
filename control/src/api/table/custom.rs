//! Table columns of custom resources: NAME, then the CRD version's
//! additionalPrinterColumns (AGE when it declares none), read with their JSONPaths.

use serde_json::{Value, json};

use crate::{crd::jsonpath::JsonPath, resources::PrinterColumn};

/// The AGE column kube gives a CRD version that declares no columns.
fn age_column() -> PrinterColumn {
    PrinterColumn {
        name: "Age".to_owned(),
        type_: "date".to_owned(),
        format: String::new(),
        description: String::new(),
        priority: 0,
        json_path: ".metadata.creationTimestamp".to_owned(),
    }
}

fn effective(columns: &[PrinterColumn]) -> Vec<PrinterColumn> {
    if columns.is_empty() {
        vec![age_column()]
    } else {
        columns.to_vec()
    }
}

/// The column definitions.
pub fn columns(columns: &[PrinterColumn]) -> Value {
    let mut out = vec![json!({"name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace.", "priority": 0})];
    out.extend(effective(columns).iter().map(|c| {
        json!({"name": c.name, "type": c.type_, "format": c.format,
               "description": c.description, "priority": c.priority})
    }));
    Value::Array(out)
}

/// One row's cells: the name, then each column's first value (null when absent).
pub fn cells(columns: &[PrinterColumn], object: &Value) -> Vec<Value> {
    let name = object
        .pointer("/metadata/name")
        .cloned()
        .unwrap_or(Value::Null);
    let mut cells = vec![name];
    for column in effective(columns) {
        let found = JsonPath::parse(&column.json_path)
            .ok()
            .and_then(|path| path.find(object).first().copied().cloned());
        cells.push(match (found, column.type_.as_str()) {
            (None, _) => Value::Null,
            (Some(Value::String(time)), "date") => Value::String(super::age(&time)),
            (Some(Value::String(text)), _) => Value::String(text),
            (Some(value), "string") => Value::String(match &value {
                Value::Object(_) | Value::Array(_) => value.to_string(),
                other => other.to_string().trim_matches('"').to_owned(),
            }),
            (Some(value), _) => value,
        });
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_columns_and_the_default_age() {
        let object = json!({"metadata": {"name": "w", "creationTimestamp": "2020-01-01T00:00:00Z"},
                            "spec": {"replicas": 2, "image": "nginx"}});
        let replicas = PrinterColumn {
            name: "Replicas".to_owned(),
            type_: "integer".to_owned(),
            format: String::new(),
            description: String::new(),
            priority: 0,
            json_path: ".spec.replicas".to_owned(),
        };
        let missing = PrinterColumn {
            name: "Ready".to_owned(),
            type_: "string".to_owned(),
            json_path: ".status.ready".to_owned(),
            ..replicas.clone()
        };
        assert_eq!(
            Value::Array(cells(&[replicas, missing], &object)),
            json!(["w", 2, null])
        );
        let defaulted = cells(&[], &object);
        assert_eq!(defaulted[0], "w");
        assert!(
            defaulted[1]
                .as_str()
                .is_some_and(|age| age.ends_with('y') || age.ends_with('d')),
            "{defaulted:?}"
        );
        assert_eq!(columns(&[])[1]["name"], "Age");
    }
}
