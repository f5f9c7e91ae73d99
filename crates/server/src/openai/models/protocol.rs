//! `GET /v1/models` and `GET /v1/models/{id}`: OpenAI's model list, with vLLM's
//! `max_model_len` beside each entry.

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelCard {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
    pub root: String,
    pub parent: Option<String>,
    pub max_model_len: usize,
}

impl ModelCard {
    pub fn new(id: &str, created: u64, max_model_len: usize) -> Self {
        Self {
            id: id.to_string(),
            object: "model",
            created,
            owned_by: "ingot",
            root: id.to_string(),
            parent: None,
            max_model_len,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelCard>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_serializes_like_openai() {
        let list = ModelList {
            object: "list",
            data: vec![ModelCard::new("m", 7, 2048)],
        };
        assert_eq!(
            serde_json::to_value(&list).unwrap(),
            serde_json::json!({"object": "list", "data": [{"id": "m", "object": "model", "created": 7,
                "owned_by": "ingot", "root": "m", "parent": null, "max_model_len": 2048}]})
        );
    }
}
