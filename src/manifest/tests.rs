//! Tests of the whole reader through `load`, on in-memory repositories.

use super::*;
