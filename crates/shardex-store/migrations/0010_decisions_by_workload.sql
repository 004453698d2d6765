-- A workload's decisions are looked up by workload (its dashboard page): the workload gets a
-- column of its own, filled for the rows already there, and an index.
ALTER TABLE decisions ADD COLUMN workload INTEGER;
UPDATE decisions SET workload = json_extract(decision, '$.workload_id');
CREATE INDEX decisions_by_workload ON decisions (workload, id);
