//! The run report: one self-contained HTML page about a run (`baton report`). `model` reads
//! the run through `RunControl`; `audit_view` derives attempts and tasks from the audit log;
//! `dag_svg` and `timeline` draw inline SVG; `html` and `sections` write the page.

mod audit_view;
mod dag_svg;
mod html;
mod model;
mod sections;
mod text;
mod timeline;

pub use html::page;
pub use model::collect;
