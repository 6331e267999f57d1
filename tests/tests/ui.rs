//! Compile-fail cases of `#[derive(Versionize)]`: one file per mistake in `tests/ui/`, with
//! the expected compiler output next to it. Regenerate with `TRYBUILD=overwrite` and read
//! the diff: each error must point at the offending token.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
