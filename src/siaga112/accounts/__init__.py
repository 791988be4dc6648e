"""Human accounts for the console: operators, supervisors, agency staff and admins signing in
with a password, and their server-side sessions."""
