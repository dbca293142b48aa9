//! Tests of the proxy: rendering (text), the kernel accepting it (netns), real traffic,
//! and the controllers over a fake API.

mod fixtures;
mod kernel;
mod netns;
mod render;
mod run;
mod traffic;
mod update;
