"""The run bundle's report: report.json (model, schema), index.html, report.md, junit.xml, and
``hil diff`` between two bundles. Entry point: :func:`harness.report.render.render`."""
