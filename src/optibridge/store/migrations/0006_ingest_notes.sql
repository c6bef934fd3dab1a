-- What looked wrong while paging a campaign's recipients (a page larger than asked, a server page
-- cap below $top, customers repeated across pages): shown with the campaign, never silent.
ALTER TABLE campaigns ADD COLUMN ingest_notes text[] NOT NULL DEFAULT '{}';
