//! Limits on a document's shape that async-graphql does not check itself: aliases (an alias
//! flood multiplies work without deepening the document) and root fields.

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ServerError, ServerResult, Variables};

/// Refuses documents with too many aliases or root fields.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DocumentLimits {
    pub(crate) max_aliases: usize,
    pub(crate) max_root_fields: usize,
}

impl ExtensionFactory for DocumentLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(*self)
    }
}

fn aliases(set: &SelectionSet) -> usize {
    set.items
        .iter()
        .map(|s| match &s.node {
            Selection::Field(f) => {
                usize::from(f.node.alias.is_some()) + aliases(&f.node.selection_set.node)
            }
            Selection::InlineFragment(i) => aliases(&i.node.selection_set.node),
            Selection::FragmentSpread(_) => 0,
        })
        .sum()
}

/// Root fields of a selection set, following fragments (each spread counted once per use, a
/// fragment cycle stops at the depth guard).
fn root_fields(doc: &ExecutableDocument, set: &SelectionSet, depth: usize) -> usize {
    if depth > 16 {
        return 0;
    }
    set.items
        .iter()
        .map(|s| match &s.node {
            Selection::Field(_) => 1,
            Selection::InlineFragment(i) => root_fields(doc, &i.node.selection_set.node, depth + 1),
            Selection::FragmentSpread(f) => doc
                .fragments
                .get(&f.node.fragment_name.node)
                .map_or(0, |fr| {
                    root_fields(doc, &fr.node.selection_set.node, depth + 1)
                }),
        })
        .sum()
}

#[async_trait::async_trait]
impl Extension for DocumentLimits {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        let total_aliases: usize = doc
            .operations
            .iter()
            .map(|(_, op)| aliases(&op.node.selection_set.node))
            .chain(
                doc.fragments
                    .values()
                    .map(|f| aliases(&f.node.selection_set.node)),
            )
            .sum();
        if total_aliases > self.max_aliases {
            return Err(ServerError::new(
                format!(
                    "the document has {total_aliases} aliases; at most {} are allowed",
                    self.max_aliases
                ),
                None,
            ));
        }
        for (name, op) in doc.operations.iter() {
            let n = root_fields(&doc, &op.node.selection_set.node, 0);
            if n > self.max_root_fields {
                let which = name.map_or("the operation".to_string(), |n| format!("operation {n}"));
                return Err(ServerError::new(
                    format!(
                        "{which} selects {n} root fields; at most {} are allowed in one request",
                        self.max_root_fields
                    ),
                    None,
                ));
            }
        }
        Ok(doc)
    }
}
