//! The pages the gate shows a room's visitors, with the room's own template when it has one
//! ([`crate::template`]). A template is compiled once per process (or isolate) and text; any
//! trouble with it (the store cannot give its text, a render fails on a visitor's numbers) shows
//! the built-in page, never an error.

use std::sync::Arc;

use super::state::Service;
use super::store::StoreError;
use crate::room::RoomId;
use crate::template::{Page, PageState, PageTemplate, TemplateRef};

/// The page, in the room's template if it has one (reading which one the room names).
pub(super) async fn render(s: &Service, page: &Page<'_>, now: u64) -> String {
    // While the store is away, the template this instance last used for the room: asking the
    // store would only wait for it to fail again.
    let template = match page.state {
        PageState::Unavailable => s.templates.last_for(page.room),
        _ => match s.store.room(page.room, now).await {
            Ok(record) => {
                named_template(s, page.room, record.and_then(|r| r.template).as_ref(), now).await
            }
            Err(err) => failed_load(s, page.room, &err),
        },
    };
    with_template(s, page, template)
}

/// The page, in the template `named` (what the room's record, which the caller has just read,
/// names): no second read of the room on the gate's waiting and full pages.
pub(super) async fn render_named(
    s: &Service,
    page: &Page<'_>,
    named: Option<&TemplateRef>,
    now: u64,
) -> String {
    let template = named_template(s, page.room, named, now).await;
    with_template(s, page, template)
}

fn with_template(s: &Service, page: &Page<'_>, template: Option<Arc<PageTemplate>>) -> String {
    let Some(template) = template else {
        return page.render_builtin();
    };
    match template.render(page) {
        Ok(html) => html,
        Err(err) => {
            s.metrics.template_failed(page.room, "render");
            tracing::warn!(room = %page.room, state = page.state.as_str(), error = %err,
                "the room's page template failed: the built-in page is shown");
            page.render_builtin()
        }
    }
}

/// The template `named`, compiled; `None` when the room names none, or it cannot be had now.
async fn named_template(
    s: &Service,
    room: &RoomId,
    named: Option<&TemplateRef>,
    now: u64,
) -> Option<Arc<PageTemplate>> {
    let Some(reference) = named else {
        s.templates.forget(room);
        return None;
    };
    match compiled(s, room, reference, now).await {
        Ok(Some(template)) => {
            s.templates.remember(room, &template);
            Some(template)
        }
        // Changed since this instance read the room: the next page finds the new one.
        Ok(None) => s.templates.last_for(room),
        Err(err) => failed_load(s, room, &err),
    }
}

fn failed_load(s: &Service, room: &RoomId, err: &StoreError) -> Option<Arc<PageTemplate>> {
    s.metrics.template_failed(room, "load");
    tracing::warn!(room = %room, error = %err,
        "the room's page template could not be loaded: the built-in page is shown");
    s.templates.last_for(room)
}

/// The template `reference` names, compiled (once per text); `None` when the store no longer
/// keeps it. While another request loads it, the template the room used before (or none).
pub(super) async fn compiled(
    s: &Service,
    room: &RoomId,
    reference: &TemplateRef,
    now: u64,
) -> Result<Option<Arc<PageTemplate>>, StoreError> {
    if let Some(template) = s.templates.get(reference) {
        return Ok(Some(template));
    }
    let Some(_loading) = s.templates.start_loading(reference) else {
        // Another request is reading and compiling it: this one shows what the room showed.
        return Ok(s.templates.last_for(room));
    };
    let Some(text) = s.store.template(room, reference, now).await? else {
        return Ok(None);
    };
    let template = PageTemplate::compile(&text)
        .map_err(|e| StoreError::Invalid(format!("the stored template: {}", e.message)))?;
    let template = Arc::new(template);
    s.templates.insert(template.clone());
    Ok(Some(template))
}
