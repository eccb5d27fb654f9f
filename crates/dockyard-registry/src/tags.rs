//! Listing tags, following `Link` pagination.

use serde_json::Value;

use crate::client::{Registry, Scope};
use crate::error::{RegistryError, Result};

/// The `<url>` of a `Link: <url>; rel="next"` header.
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        is_next.then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

impl Registry {
    /// All tags of a repository.
    pub async fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        self.list_tags_paged(repo, None).await
    }

    /// All tags, asking for pages of `page_size` (the registry may choose
    /// its own) and following `Link` headers to the end.
    pub async fn list_tags_paged(
        &self,
        repo: &str,
        page_size: Option<usize>,
    ) -> Result<Vec<String>> {
        let mut tags = Vec::new();
        let mut url = self.url(&format!("v2/{repo}/tags/list"))?;
        if let Some(n) = page_size {
            url.query_pairs_mut().append_pair("n", &n.to_string());
        }
        for _page in 0..10_000 {
            let what = format!("tags of {repo}");
            let resp = self
                .get_ok(url.clone(), &Scope::pull(repo), None, &what)
                .await?;
            let next = resp
                .headers()
                .get("link")
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let bytes = resp.bytes().await.map_err(|e| RegistryError::Network {
                registry: self.name.clone(),
                what: what.clone(),
                reason: crate::client::describe(&e),
            })?;
            let body: Value =
                serde_json::from_slice(&bytes).map_err(|e| RegistryError::Network {
                    registry: self.name.clone(),
                    what: what.clone(),
                    reason: format!("malformed tag list: {e}"),
                })?;
            if let Some(list) = body.get("tags").and_then(Value::as_array) {
                tags.extend(list.iter().filter_map(Value::as_str).map(str::to_string));
            }
            match next {
                Some(n) => {
                    url = url.join(&n).map_err(|e| RegistryError::Protocol {
                        registry: self.name.clone(),
                        what: "tag list".into(),
                        reason: format!("bad Link header {n:?}: {e}"),
                    })?
                }
                None => return Ok(tags),
            }
        }
        Ok(tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_link_headers() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?last=b&n=2")
        );
        assert_eq!(next_link(r#"</x>; rel="prev""#), None);
    }
}
