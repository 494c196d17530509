-- Test-only Prosody module (tests/e2e): lets a client make its server send a stanza to a remote
-- domain with an address spelt as a hostile or sloppy server would, which Prosody's own stanza
-- router never does (it prepares every address a client gives).
--
-- A stanza carrying <readdress xmlns="urn:fedgate:e2e" to="..."/> leaves over s2s with that
-- `to` (routed to the domain of its original `to`); the <readdress/> child is removed.
local xmlns = "urn:fedgate:e2e";

module:hook("route/remote", function(event)
	local stanza = event.stanza;
	local readdress = stanza:get_child("readdress", xmlns);
	if not readdress then return; end
	stanza:maptags(function(tag)
		if tag.name == "readdress" and tag.attr.xmlns == xmlns then return nil; end
		return tag;
	end);
	if readdress.attr.to then
		module:log("debug", "readdressing %s to %q", stanza.name, readdress.attr.to);
		stanza.attr.to = readdress.attr.to;
	end
end, 1000);
