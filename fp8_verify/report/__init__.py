"""The last stage: what a run leaves for people -- the terminal and Markdown summary (:mod:`.summary`),
the JSON report (:mod:`.jsonreport`), failure artifacts (:mod:`.artifacts`: a standalone repro script and
an error map) and the table helpers every report and tool shares (:mod:`.tables`)."""
