//! The UI instructions the host shows for the star-menu action (contract §6): a dialog, a message, a
//! close with a confirmation, or errors under a field. Serialised with serde for the wire (the bytes
//! are stored and given again to a repeated message) and described for the OpenAPI document.

use std::collections::BTreeMap;

use poem::{IntoResponse, Response};
use poem_openapi::{
    ApiResponse, Object, Union,
    payload::Payload,
    registry::{MetaSchemaRef, Registry},
    types::Type,
};
use serde::Serialize;

/// How serious a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, poem_openapi::Enum)]
#[serde(rename_all = "lowercase")]
#[oai(rename_all = "lowercase")]
pub enum Level {
    /// It worked.
    Success,
    /// For information.
    Info,
    /// It did not work.
    Error,
}

/// A message shown to the staff member verbatim; `code` is stable and machine-readable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Object)]
pub struct StaffMessage {
    /// How serious.
    pub level: Level,
    /// One of the codes the host knows.
    pub code: String,
    /// What happened and what to do, in plain words.
    pub text: String,
}

/// One choice of a radio field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Object)]
pub struct DialogOption {
    /// The submitted value.
    pub value: String,
    /// What the staff member reads.
    pub label: String,
    /// Shown but not selectable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

/// A field of the dialog: a radio question, or read-only text (shown as plain paragraphs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Object)]
pub struct DialogField {
    /// `radio` or `text`.
    #[serde(rename = "type")]
    #[oai(rename = "type")]
    pub field_type: String,
    /// The key in the submitted `values` (a radio), or the text's name (`status`, `history`).
    pub id: String,
    /// The question (a radio).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Whether an answer is needed (a radio).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    /// The choices (a radio).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<DialogOption>>,
    /// The text (a text field).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl DialogField {
    /// A required radio question.
    pub fn radio(id: &str, label: &str, options: Vec<DialogOption>) -> Self {
        Self {
            field_type: "radio".into(),
            id: id.into(),
            label: Some(label.into()),
            required: Some(true),
            options: Some(options),
            text: None,
        }
    }

    /// Read-only text.
    pub fn text(id: &str, text: String) -> Self {
        Self {
            field_type: "text".into(),
            id: id.into(),
            label: None,
            required: None,
            options: None,
            text: Some(text),
        }
    }
}

/// The dialog the host opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Object)]
pub struct Dialog {
    /// Its title.
    pub title: String,
    /// The submit button.
    pub submit_label: String,
    /// The cancel button.
    pub cancel_label: String,
    /// Its fields.
    pub fields: Vec<DialogField>,
}

/// `open_dialog`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Object)]
pub struct OpenDialog {
    /// The dialog.
    pub dialog: Dialog,
}

/// `message` and `close`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Object)]
pub struct WithMessage {
    /// The message.
    pub message: StaffMessage,
}

/// An error under one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Object)]
pub struct FieldError {
    /// One of the codes the host knows.
    pub code: String,
    /// What to do.
    pub text: String,
}

/// `errors`: keeps the dialog open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Object)]
pub struct WithErrors {
    /// By field id.
    pub errors: BTreeMap<String, FieldError>,
}

/// One UI instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Union)]
#[serde(tag = "response_action", rename_all = "snake_case")]
#[oai(discriminator_name = "response_action")]
pub enum ActionResponse {
    /// Ask how to send.
    #[oai(mapping = "open_dialog")]
    OpenDialog(OpenDialog),
    /// A message instead of a dialog.
    #[oai(mapping = "message")]
    Message(WithMessage),
    /// Close the dialog and show a message.
    #[oai(mapping = "close")]
    Close(WithMessage),
    /// Keep the dialog open with errors under fields.
    #[oai(mapping = "errors")]
    Errors(WithErrors),
}

impl ActionResponse {
    /// A message instead of a dialog.
    pub fn message(level: Level, code: &str, text: String) -> Self {
        Self::Message(WithMessage { message: StaffMessage { level, code: code.to_owned(), text } })
    }

    /// Close, with a message.
    pub fn close(level: Level, code: &str, text: String) -> Self {
        Self::Close(WithMessage { message: StaffMessage { level, code: code.to_owned(), text } })
    }

    /// Keep the dialog open with an error under `field`.
    pub fn field_error(field: &str, code: &str, text: String) -> Self {
        Self::Errors(WithErrors {
            errors: BTreeMap::from([(field.to_owned(), FieldError { code: code.to_owned(), text })]),
        })
    }

    /// The exact bytes sent (and stored for a repeat).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("UI instructions always serialise")
    }
}

/// Pre-serialised JSON (the stored answer), documented with the schema of `T`.
pub struct StoredJson<T>(pub String, std::marker::PhantomData<fn() -> T>);

impl<T> StoredJson<T> {
    /// Wraps the bytes to send.
    pub fn new(body: String) -> Self {
        Self(body, std::marker::PhantomData)
    }
}

impl<T: Type> Payload for StoredJson<T> {
    const CONTENT_TYPE: &'static str = "application/json";

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Send> IntoResponse for StoredJson<T> {
    fn into_response(self) -> Response {
        Response::builder().content_type("application/json").body(self.0)
    }
}

/// The success answer of the action endpoint.
#[derive(ApiResponse)]
pub enum ActionAnswered {
    /// One UI instruction.
    #[oai(status = 200)]
    Ok(StoredJson<ActionResponse>),
}
