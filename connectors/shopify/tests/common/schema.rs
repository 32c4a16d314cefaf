//! Validates GraphQL documents against Shopify's Admin schema (introspection JSON, in
//! `fixtures/admin_schema_2025-01.json.gz`): every field exists on its parent type, every
//! argument exists on its field, required arguments are given, enum literals are values of
//! the argument's enum, variables are declared with a type the argument accepts, scalars have
//! no selection and objects have one.

use std::collections::HashMap;
use std::io::Read as _;
use std::sync::OnceLock;

use async_graphql_parser::parse_query;
use async_graphql_parser::types::{
    BaseType, DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet, Type,
};
use async_graphql_value::Value as GqlValue;
use serde_json::Value as Json;

pub struct Schema {
    types: HashMap<String, Json>,
    query: String,
    mutation: String,
}

/// What a valid document selects at its root.
#[derive(Debug, Default)]
pub struct Validated {
    pub root_fields: Vec<String>,
    pub deprecated: Vec<String>,
}

pub fn admin() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/admin_schema_2025-01.json.gz"
        );
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        let json: Json = serde_json::from_str(&text).unwrap();
        let s = &json["data"]["__schema"];
        Schema {
            types: s["types"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| (t["name"].as_str().unwrap().to_string(), t.clone()))
                .collect(),
            query: s["queryType"]["name"].as_str().unwrap().to_string(),
            mutation: s["mutationType"]["name"].as_str().unwrap().to_string(),
        }
    })
}

/// An introspection type reference: (named type, outer non-null).
fn named(t: &Json) -> (&str, bool) {
    let non_null = t["kind"] == "NON_NULL";
    let mut t = t;
    while t["name"].is_null() {
        t = &t["ofType"];
    }
    (t["name"].as_str().unwrap(), non_null)
}

fn type_name(t: &Type) -> &str {
    match &t.base {
        BaseType::Named(n) => n.as_str(),
        BaseType::List(inner) => type_name(inner),
    }
}

impl Schema {
    pub fn has_type(&self, name: &str) -> bool {
        self.types.contains_key(name)
    }

    /// Validates a document; the error lists every problem found.
    pub fn validate(&self, document: &str) -> Result<Validated, String> {
        let doc = parse_query(document).map_err(|e| format!("syntax: {e}"))?;
        let mut errors = vec![];
        let mut out = Validated::default();
        let ops: Vec<_> = match &doc.operations {
            DocumentOperations::Single(op) => vec![op],
            DocumentOperations::Multiple(m) => m.values().collect(),
        };
        for op in ops {
            let root = match op.node.ty {
                OperationType::Query => &self.query,
                OperationType::Mutation => &self.mutation,
                OperationType::Subscription => {
                    errors.push("subscriptions are not used".to_string());
                    continue;
                }
            };
            let vars: HashMap<&str, &Type> = op
                .node
                .variable_definitions
                .iter()
                .map(|v| (v.node.name.node.as_str(), &v.node.var_type.node))
                .collect();
            for v in vars.values() {
                if !self.has_type(type_name(v)) {
                    errors.push(format!("variable type {} does not exist", type_name(v)));
                }
            }
            for item in &op.node.selection_set.node.items {
                if let Selection::Field(f) = &item.node {
                    out.root_fields.push(f.node.name.node.to_string());
                }
            }
            self.walk(
                &doc,
                root,
                &op.node.selection_set.node,
                &vars,
                root,
                &mut errors,
                &mut out,
            );
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors.join("\n"))
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn walk(
        &self,
        doc: &ExecutableDocument,
        parent: &str,
        set: &SelectionSet,
        vars: &HashMap<&str, &Type>,
        path: &str,
        errors: &mut Vec<String>,
        out: &mut Validated,
    ) {
        let Some(ty) = self.types.get(parent) else {
            errors.push(format!("{path}: type {parent} does not exist"));
            return;
        };
        for item in &set.items {
            match &item.node {
                Selection::Field(f) => {
                    let f = &f.node;
                    let name = f.name.node.as_str();
                    let at = format!("{path}.{name}");
                    if name == "__typename" {
                        continue;
                    }
                    let Some(def) = ty["fields"]
                        .as_array()
                        .and_then(|fs| fs.iter().find(|d| d["name"] == name))
                    else {
                        errors.push(format!("{at}: field {name} does not exist on {parent}"));
                        continue;
                    };
                    if def["isDeprecated"] == true {
                        out.deprecated.push(at.clone());
                    }
                    let args = def["args"].as_array().cloned().unwrap_or_default();
                    for (arg_name, value) in &f.arguments {
                        let arg_name = arg_name.node.as_str();
                        let Some(arg) = args.iter().find(|a| a["name"] == arg_name) else {
                            errors.push(format!("{at}: argument {arg_name} does not exist"));
                            continue;
                        };
                        self.check_value(&at, arg_name, &arg["type"], &value.node, vars, errors);
                    }
                    for arg in &args {
                        let (_, required) = named(&arg["type"]);
                        let given = f
                            .arguments
                            .iter()
                            .any(|(n, _)| arg["name"] == n.node.as_str());
                        if required && arg["defaultValue"].is_null() && !given {
                            errors.push(format!(
                                "{at}: required argument {} is missing",
                                arg["name"]
                            ));
                        }
                    }
                    let (field_type, _) = named(&def["type"]);
                    let kind = self.types.get(field_type).map(|t| t["kind"].clone());
                    let leaf = matches!(
                        kind.as_ref().and_then(Json::as_str),
                        Some("SCALAR" | "ENUM")
                    );
                    let has_selection = !f.selection_set.node.items.is_empty();
                    if leaf && has_selection {
                        errors.push(format!(
                            "{at}: {field_type} is a leaf and takes no selection"
                        ));
                    } else if !leaf && !has_selection {
                        errors.push(format!("{at}: {field_type} needs a selection"));
                    } else if !leaf {
                        self.walk(
                            doc,
                            field_type,
                            &f.selection_set.node,
                            vars,
                            &at,
                            errors,
                            out,
                        );
                    }
                }
                Selection::InlineFragment(fr) => {
                    let on = fr
                        .node
                        .type_condition
                        .as_ref()
                        .map_or(parent, |c| c.node.on.node.as_str());
                    self.walk(
                        doc,
                        on,
                        &fr.node.selection_set.node,
                        vars,
                        path,
                        errors,
                        out,
                    );
                }
                Selection::FragmentSpread(sp) => {
                    match doc.fragments.get(sp.node.fragment_name.node.as_str()) {
                        Some(fr) => self.walk(
                            doc,
                            fr.node.type_condition.node.on.node.as_str(),
                            &fr.node.selection_set.node,
                            vars,
                            path,
                            errors,
                            out,
                        ),
                        None => errors.push(format!("{path}: unknown fragment")),
                    }
                }
            }
        }
    }

    fn check_value(
        &self,
        at: &str,
        arg: &str,
        arg_type: &Json,
        value: &GqlValue,
        vars: &HashMap<&str, &Type>,
        errors: &mut Vec<String>,
    ) {
        let (want, arg_required) = named(arg_type);
        match value {
            GqlValue::Variable(v) => match vars.get(v.as_str()) {
                None => errors.push(format!("{at}({arg}): variable ${v} is not declared")),
                Some(t) => {
                    if type_name(t) != want {
                        errors.push(format!(
                            "{at}({arg}): variable ${v} is a {}, the argument takes {want}",
                            type_name(t)
                        ));
                    }
                    if arg_required && t.nullable {
                        errors.push(format!("{at}({arg}): variable ${v} must be non-null"));
                    }
                }
            },
            GqlValue::Enum(e) => {
                let ok = self.types.get(want).is_some_and(|t| {
                    t["enumValues"]
                        .as_array()
                        .is_some_and(|vs| vs.iter().any(|x| x["name"] == e.as_str()))
                });
                if !ok {
                    errors.push(format!("{at}({arg}): {e} is not a value of {want}"));
                }
            }
            GqlValue::String(_)
                if !matches!(want, "String" | "ID" | "DateTime" | "URL" | "Decimal") =>
            {
                let kind = self.types.get(want).map(|t| t["kind"].clone());
                if kind.as_ref().and_then(Json::as_str) != Some("SCALAR") {
                    errors.push(format!("{at}({arg}): a string is not a {want}"));
                }
            }
            GqlValue::Number(_) if !matches!(want, "Int" | "Float" | "UnsignedInt64") => {
                errors.push(format!("{at}({arg}): a number is not a {want}"));
            }
            GqlValue::Null if arg_required => {
                errors.push(format!("{at}({arg}): null for a required argument"));
            }
            _ => {}
        }
    }
}
