"""Protocol rules, free of HTTP frameworks and storage engines."""
