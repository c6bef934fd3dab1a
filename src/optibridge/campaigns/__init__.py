"""Campaign progress and the operator actions on a campaign: pause, resume, cancel."""
