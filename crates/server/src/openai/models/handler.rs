//! The model list: this server serves exactly one model, under its served name.

use axum::Json;
use axum::extract::{Path, State};

use super::protocol::{ModelCard, ModelList};
use crate::errors::ApiError;
use crate::state::AppState;

fn card(state: &AppState) -> ModelCard {
    ModelCard::new(&state.model_name, state.started, state.max_model_len())
}

pub async fn list(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: vec![card(&state)],
    })
}

pub async fn retrieve(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ModelCard>, ApiError> {
    state.check_model(Some(&id))?;
    Ok(Json(card(&state)))
}
