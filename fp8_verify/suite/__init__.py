"""The suite: the pytest plugin (:mod:`.plugin`) split by job, the findings (:mod:`.findings`), the input
contract (:mod:`.contract`) and the checks properties share (:mod:`.properties`)."""
