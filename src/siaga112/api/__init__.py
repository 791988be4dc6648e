"""HTTP plumbing shared by the capability routers: dependencies, middleware, pagination."""
