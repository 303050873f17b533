"""engine/methods"""
